"""`desra bench --suite gpu --json OUT`: one skip line per benchmark without CUDA, valid JSON, exit 0."""

from __future__ import annotations

import json

import pytest

from desra.benchmarks import registry as bench
from desra.cli import main
from desra.core.errors import UnknownNameError


def test_gpu_suite_without_cuda_skips_every_benchmark_and_writes_json(tmp_path, capsys):
    out = tmp_path / "gpu.json"
    assert main(["bench", "--suite", "gpu", "--device", "cpu", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    names = bench.SUITES["gpu"][1]
    assert {"gpu-sr", "gpu-dmap", "finetune-throughput", "fingerprint-extract", "gpu-ddp"} <= set(names)
    assert report["suite"] == "gpu" and report["benchmarks"] == {} and report["failed"] == {}
    assert list(report["skipped"]) == list(names)
    assert all("CUDA" in reason and "\n" not in reason for reason in report["skipped"].values())
    assert report["environment"]["device"] == "cpu"
    lines = [line for line in capsys.readouterr().out.splitlines() if "skipped:" in line]
    assert [line.split("]")[0].lstrip("[") for line in lines] == list(names)


def test_gpu_benchmarks_called_alone_on_cpu_give_one_row_saying_why():
    report = bench.run_benchmarks(["gpu-sr", "gpu-dmap", "gpu-ddp"], bench.BenchContext(device="cpu"))
    for name, rows in report["benchmarks"].items():
        assert len(rows) == 1 and rows[0]["metric"] == "skipped" and rows[0]["value"] != rows[0]["value"]  # NaN
        assert rows[0]["note"].startswith(f"{name}: needs a CUDA device")


def test_a_failing_benchmark_is_recorded_and_the_suite_goes_on(monkeypatch):
    def boom(ctx):
        raise RuntimeError("out of memory\nsecond line")

    def fine(ctx):
        return [bench.BenchResult("x", 1.0, "s")]

    monkeypatch.setitem(bench._REGISTRY, "test-boom", bench.Benchmark("test-boom", "fails", boom))
    monkeypatch.setitem(bench._REGISTRY, "test-fine", bench.Benchmark("test-fine", "works", fine))
    monkeypatch.setitem(bench.SUITES, "test", ("cpu", ("test-boom", "test-fine")))
    seen = []
    report = bench.run_suite("test", bench.BenchContext(device="cpu"), on_progress=lambda r: seen.append(dict(r["seconds"])))
    assert report["failed"] == {"test-boom": "RuntimeError: out of memory"}
    assert report["benchmarks"]["test-fine"][0]["value"] == 1.0
    assert [sorted(s) for s in seen] == [["test-boom"], ["test-boom", "test-fine"]]


def test_unknown_suite_is_a_typed_error_and_names_with_a_suite_are_refused(capsys):
    with pytest.raises(UnknownNameError):
        bench.run_suite("tpu", bench.BenchContext())
    assert main(["bench", "--suite", "gpu", "detect-dmap"]) == 2
    assert "not both" in capsys.readouterr().err


def test_json_takes_a_file_but_not_a_benchmark_name(capsys):
    assert main(["bench", "--json", "gpu-dmap"]) == 2
    assert "put benchmark names before --json" in capsys.readouterr().err
    assert main(["bench", "gpu-dmap", "--device", "cpu", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["benchmarks"]["gpu-dmap"][0]["metric"] == "skipped"


def test_a_named_command_registers_alone_and_help_still_lists_every_command(capsys):
    from desra.cli import COMMAND_MODULES, _named_command, build_parser

    assert _named_command(["detect", "--mse", "a.png"]) == ("detect",)
    assert _named_command(["--debug", "evaluate-run", "--json"]) == ("evaluate_run",)
    assert _named_command(["--help", "detect"]) is None and _named_command(["nope"]) is None and _named_command([]) is None
    parser = build_parser(("detect",))
    assert parser.parse_args(["detect", "--mse", "a", "--gan", "b"]).command == "detect"
    with pytest.raises(SystemExit):
        main(["--help"])
    listed = capsys.readouterr().out
    assert all(name.replace("_", "-") in listed for name in COMMAND_MODULES)
