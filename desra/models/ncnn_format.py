"""Tencent ncnn's file format, read exactly: ``.param`` text -> :class:`NcnnGraph`, ``.bin`` bytes -> tensors.

ncnn's ``.bin`` (``src/modelbin.cpp``): per layer, in ``.param`` order, each tensor the layer loads.
A Convolution loads its weights with a 4-byte storage tag (``0x01306B47`` = fp16, padded to 4 bytes;
``0`` = raw fp32) in ``(out, in, kh, kw)`` order, then its fp32 bias with no tag; a PReLU loads its fp32
slopes with no tag. Layers without weights (Input, Split, Concat, ...) store nothing. The byte count
the ``.param`` implies is checked against the file before anything is decoded. What the graph *is*
(which architecture) is :mod:`desra.models.ncnn_mapping`'s business.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from desra.core.errors import ArchitectureError, CheckpointError

MAGIC = 7767517  # first line of every ncnn .param text file
TAG_FP16 = 0x01306B47  # storage tag of fp16 weights in a .bin
TAG_FP32 = 0x00000000  # storage tag of raw fp32 weights
# Layer types whose weights this importer can read, with the tensors each loads from the .bin.
KNOWN_LAYERS = ("Input", "Split", "Convolution", "PReLU", "ReLU", "Concat", "Eltwise", "BinaryOp", "Interp", "PixelShuffle")


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
