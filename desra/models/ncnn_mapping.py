"""An ncnn graph mapped onto desra's architectures: which basicsr network it is and where each stored tensor goes.

:func:`map_graph` matches the graph layer by layer against the forward pass of basicsr's ``RRDBNet``
(x4, any depth) and ``SRVGGNetCompact``: an unmapped graph is refused naming the first layer that does
not fit. :func:`to_state_dict` then places the decoded ``.bin`` tensors under their state-dict keys.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from desra.core.errors import ArchitectureError, CheckpointError
from desra.models.ncnn_format import KNOWN_LAYERS, BinTensor, NcnnGraph, NcnnLayer


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


def to_state_dict(mapping: GraphMapping, tensors: Mapping[tuple[str, str], BinTensor]) -> dict[str, Any]:
    """basicsr state dict {key: float32 numpy array shaped as torch expects} from decoded ``.bin`` tensors."""
    out = {}
    for slot in mapping.slots:
        values = tensors[(slot.layer, slot.kind)].values
        if values.size != math.prod(slot.shape):
            raise CheckpointError(f"layer {slot.layer}'s {slot.kind} has {values.size} values, {slot.key} needs shape {slot.shape}")
        out[slot.key] = values.reshape(slot.shape)
    return out
