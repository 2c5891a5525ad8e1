"""The Ray engine of batch detection, on a real local Ray (one per test session): the same files, byte for
byte, and the same report.json (apart from its timing) as the local engine, a bad image in the middle
listed in place; without Ray, one line saying how to install it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from desra.cli import main
from desra.core.imageio import write_image

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray with a 200 MB object store, started once: every Ray run of the test session is in this
    module and joins it, and its processes are gone before the rest of the suite runs."""
    from desra.service.ray_engine import RayOptions, ray_session

    with ray_session(RayOptions(num_cpus=2, object_store_bytes=200 * 1024**2)) as ray:
        yield ray


def _outputs(folder):
    """{file name: bytes} of every output but report.json, and report.json without its timing."""
    files = {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.name != "report.json"}
    report = json.loads((folder / "report.json").read_text())
    report.pop("elapsed_s")
    return files, report


def _run_both(tmp_path, args):
    """Run `desra detect ARGS` on the local engine and on Ray: (local outputs, Ray outputs, exit codes)."""
    codes = [main(["detect", *args, "--out", str(tmp_path / engine), "--engine", engine]) for engine in ("local", "ray")]
    return _outputs(tmp_path / "local"), _outputs(tmp_path / "ray"), codes


@pytest.mark.slow
def test_lr_folder_on_ray_writes_the_local_engines_files(local_ray, tmp_path, photo, tiny_segformer, capsys):
    lr = tmp_path / "lr"
    lr.mkdir()
    for i, name in enumerate(PHOTOS):  # small crops of real photos: the embedded x4 pair makes 192x256 SR outputs
        write_image(lr / f"{i}_{name}.png", photo(name)[40:88, 100:164])
    (lr / "1_coffee.png").write_bytes((lr / "1_coffee.png").read_bytes()[:300])  # truncated, in the middle
    args = ["--lr", str(lr), "--pair", "desra-demo-x4", "--segmenter", str(tiny_segformer), "--min-area", "50",
            "--save-sr", "--save-d"]
    (local_files, local_report), (ray_files, ray_report), codes = _run_both(tmp_path, args)
    assert codes == [1, 1]  # one image failed, the others were detected
    assert [f["name"] for f in ray_report["failures"]] == ["1_coffee"]
    assert "corrupt or truncated" in ray_report["failures"][0]["error"]
    assert [i["name"] for i in ray_report["images"]] == ["0_astronaut", "2_chelsea", "3_rocket"]
    assert ray_report["semantics"]["used"] and {"0_astronaut_semantic.png", "3_rocket_mse.png", "2_chelsea_D.npy"} <= set(ray_files)
    assert ray_report == local_report
    assert sorted(ray_files) == sorted(local_files)
    for name, data in local_files.items():
        assert ray_files[name] == data, name
    assert capsys.readouterr().err.count("failed: 1_coffee") == 2


def test_sr_pairs_on_ray_write_the_local_engines_files(local_ray, tmp_path, photo, pair_maker):
    mse_dir, gan_dir = tmp_path / "mse", tmp_path / "gan"
    mse_dir.mkdir()
    gan_dir.mkdir()
    for i, name in enumerate(PHOTOS):
        crop = photo(name)[:160, :200]
        mse, gan, _ = pair_maker(crop, [(30, 110, 40, 150)], amplitude=0.1, seed=i)
        write_image(mse_dir / f"{i}_{name}.png", mse)
        write_image(gan_dir / f"{i}_{name}.png", gan)
    (gan_dir / "2_chelsea.png").write_bytes(b"not a png")  # unreadable, in the middle
    args = ["--mse", str(mse_dir), "--gan", str(gan_dir), "--segmenter", "none", "--min-area", "500"]
    (local_files, local_report), (ray_files, ray_report), codes = _run_both(tmp_path, args)
    assert codes == [1, 1]
    assert [f["name"] for f in ray_report["failures"]] == ["2_chelsea"]
    assert sum(i["regions"] for i in ray_report["images"]) >= 2  # the textured boxes are found
    assert ray_report == local_report
    assert ray_files == local_files


def test_without_ray_the_engine_says_in_one_line_how_to_install_it(tmp_path, photo):
    write_image(tmp_path / "a.png", photo("astronaut")[:32, :32])
    # Ray absent, not mocked: an import of `ray` fails as it does where the package is not installed.
    prelude = "import sys; sys.modules['ray'] = None; from desra.cli import main; "
    command = f"sys.exit(main(['detect', '--lr', {str(tmp_path / 'a.png')!r}, '--pair', 'desra-demo-x4', " \
              f"'--segmenter', 'none', '--engine', 'ray', '--out', {str(tmp_path / 'out')!r}]))"
    done = subprocess.run([sys.executable, "-c", prelude + command], check=False, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("desra: error: ") and "pip install 'desra[ray]'" in lines[0], lines


@pytest.mark.slow
def test_set_add_on_ray_stores_the_local_engines_items(local_ray, tmp_path, photo, tiny_segformer, capsys):
    from desra.repair.curated import open_set

    lr = tmp_path / "lr"
    lr.mkdir()
    for i, name in enumerate(PHOTOS):
        write_image(lr / f"{i}_{name}.png", photo(name)[100:132, 100:148])
    (lr / "2_chelsea.png").write_bytes((lr / "2_chelsea.png").read_bytes()[:200])  # truncated, in the middle
    sets = {}
    for engine in ("local", "ray"):
        root = tmp_path / engine
        assert main(["set", "create", str(root)]) == 0
        assert main(["set", "add", str(root), "--lr", str(lr), "--pair", "desra-demo-x4", "--min-area", "50",
                     "--segmenter", str(tiny_segformer), "--engine", engine]) == 2  # one file refused
        sets[engine] = {item.name: item for item in open_set(root).items()}
    assert list(sets["ray"]) == list(sets["local"]) == ["0_astronaut", "1_coffee", "3_rocket"]
    for name, item in sets["local"].items():
        theirs = sets["ray"][name]
        assert {**theirs.to_json(), "id": None} == {**item.to_json(), "id": None}
        assert theirs.provenance["segmenter"] == str(tiny_segformer)
        files = sorted(p.name for p in item.folder.iterdir())
        assert files == sorted(p.name for p in theirs.folder.iterdir()) and "mask.png" in files
        for file in files:
            assert (theirs.folder / file).read_bytes() == (item.folder / file).read_bytes(), (name, file)
    assert capsys.readouterr().out.count("refused 2_chelsea.png: ") == 2


def test_gpu_shares_that_do_not_fit_the_cluster_are_refused_with_the_numbers(local_ray, tmp_path, photo):
    from desra.core.errors import ConfigError
    from desra.detect.pipeline import DetectConfig
    from desra.service.detection import resolve_semantics, sr_batch
    from desra.service.ray_engine import RayOptions, detect_folder_ray

    for side in ("mse", "gan"):
        write_image(tmp_path / f"{side}.png", photo("rocket")[:64, :64])
    batch = sr_batch(tmp_path / "mse.png", tmp_path / "gan.png")
    with pytest.raises(ConfigError, match=r"--gpus-per-worker 8: 1 actor pool\(s\) need 8 GPU\(s\) to start but the Ray cluster has"):
        detect_folder_ray(batch, tmp_path / "out", DetectConfig(device="cuda"), resolve_semantics("none"),
                          options=RayOptions(gpus_per_worker=8.0))
    with pytest.raises(ConfigError, match=r"--gpus-per-worker must be a GPU share in \(0, 8\] \(got 0.0\)"):
        RayOptions(gpus_per_worker=0.0)


def test_ray_flags_without_the_ray_engine_are_refused(tmp_path, capsys):
    assert main(["detect", "--mse", str(tmp_path), "--gan", str(tmp_path), "--address", "auto"]) == 2
    assert "--address and --gpus-per-worker set up the Ray engine: add --engine ray" in capsys.readouterr().err
