"""Curated sets trust nothing they read (issue 20, defects 3, 4 and the set part of 5).

A set may come from someone else (``desra set import``) or be edited behind desra's back, so:
item ids are names, never paths, wherever a row becomes an item (import, open, add, a single
look-up); an import is bounded in bytes and entries from the zip's headers and again while
unpacking, refuses links, devices and other compressions, decodes every image within the pixel
limit and leaves nothing behind; a damaged manifest gives one ``desra: error:`` line. Bomb cases
run in a subprocess under address-space and file-size limits, so a regression fails fast instead
of filling the disk or swapping.
"""

from __future__ import annotations

import io
import os
import sqlite3
import stat
import struct
import subprocess
import sys
import textwrap
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

from desra.core.errors import DatasetError
from desra.repair.curated import (
    MANIFEST,
    check_item_id,
    create_set,
    open_set,
)
from desra.repair.set_archive import import_zip

SCALE = 2
LR = 24  # LR side in pixels: four tiny PNGs per item keep every test under a second


def _item_arrays(photo: np.ndarray, offset: int = 0):
    """(lr, mse, gan, mask) of a real photo crop: MSE = the crop, GAN = it brightened in a box, mask = the box."""
    hr = photo[offset: offset + LR * SCALE, offset: offset + LR * SCALE].astype(np.float32)
    lr = hr.reshape(LR, SCALE, LR, SCALE, 3).mean(axis=(1, 3)).astype(np.float32)
    mask = np.zeros(hr.shape[:2], bool)
    mask[8:24, 8:32] = True
    gan = hr.copy()
    gan[mask] = np.clip(gan[mask] * 1.3, 0, 1)
    return lr, hr, gan, mask


@pytest.fixture
def small_set(tmp_path, photo):
    """A real x2 set of two photo items in ``tmp_path/set``."""
    curated = create_set(tmp_path / "set")
    for i, name in enumerate(("chelsea", "coffee")):
        curated.add(name, *_item_arrays(photo(name), 10 * i), mask_source="file", provenance={"by": "test"})
    return curated


@pytest.fixture
def exported(small_set, tmp_path) -> Path:
    """The small set exported by desra itself."""
    return small_set.export_zip(tmp_path / "set.zip")


def _entries(archive: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(archive) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def _rezip(source: Path, target: Path, replace: dict | None = None, extra: list | None = None, method=zipfile.ZIP_STORED) -> Path:
    """``source``'s entries with some replaced (name -> bytes, or a ZipInfo/bytes pair) or added, written to ``target``."""
    replace = replace or {}
    with zipfile.ZipFile(target, "w", compression=method) as out:
        for name, data in _entries(source).items():
            value = replace.get(name, data)
            if isinstance(value, tuple):
                out.writestr(*value)
            else:
                out.writestr(name, value)
        for info, data in extra or []:
            out.writestr(info, data)
    return target


def _with_manifest_ids(archive: Path, target: Path, tmp_path: Path, new_ids: dict[str, str]) -> Path:
    """``archive`` whose manifest rows are renamed ``old id -> new id`` (files stay where they are)."""
    db_path = tmp_path / "edited.sqlite"
    db_path.write_bytes(_entries(archive)[MANIFEST])
    with sqlite3.connect(db_path) as db:
        for old, new in new_ids.items():
            db.execute("UPDATE items SET id=? WHERE id=?", (new, old))
    return _rezip(archive, target, {MANIFEST: db_path.read_bytes()})


def _left_behind(folder: Path, allowed: set[str]) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name not in allowed)


# --- defect 3: item ids are names, never paths --------------------------------------------------


@pytest.mark.parametrize(
    "bad", ["../x", "../../outside", "/etc/passwd", "/tmp", "a/b", "a\\b", "ok\x00", ".", "..", ".hidden", "", "x" * 129, 7, None]
)
def test_an_item_id_is_a_name_not_a_path(bad):
    with pytest.raises(DatasetError, match="is not an item id"):
        check_item_id(bad)


@pytest.mark.parametrize("name", ["chelsea", "café", "日本語", "-lead", "a..b", "with space", "a/b", "...", "x" * 300, "\x00"])
def test_ids_desra_makes_stay_valid(tmp_path, photo, name):
    # The validator must accept every id add() has ever made (ids are `<cleaned stem>-<6 hex>`).
    curated = create_set(tmp_path / "set")
    item = curated.add(name, *_item_arrays(photo("chelsea")), mask_source="file", provenance={})
    assert check_item_id(item.id) == item.id
    assert item.folder.parent == curated.root / "items" and item.folder.is_dir()
    assert [i.id for i in open_set(curated.root).items()] == [item.id]


@pytest.mark.parametrize("how", ["absolute", "dotdot"])
def test_an_imported_manifest_cannot_point_outside_the_set(exported, small_set, tmp_path, how):
    # The review's exploit: a row whose id is an absolute path imported fine, and then export packed
    # the outside folder and the Correct tab's mask save overwrote files there.
    victim = small_set.items()[0]
    outside = tmp_path / "outside"
    outside.mkdir()
    for file in victim.folder.iterdir():
        (outside / file.name).write_bytes(file.read_bytes())
    before = (outside / "mask.png").read_bytes()
    target = tmp_path / "imported"
    evil_id = str(outside) if how == "absolute" else "../../outside"
    evil = _with_manifest_ids(exported, tmp_path / "evil.zip", tmp_path, {victim.id: evil_id})
    with pytest.raises(DatasetError, match="not an item id"):
        import_zip(evil, target)
    assert not target.exists()
    assert (outside / "mask.png").read_bytes() == before


@pytest.mark.parametrize("evil_id", ["OUTSIDE", "../../outside", "a/../../../outside"])
def test_a_tampered_set_on_disk_is_refused_on_open_and_its_outside_files_stay(small_set, tmp_path, evil_id):
    outside = (tmp_path / "outside").resolve()
    evil_id = str(outside) if evil_id == "OUTSIDE" else evil_id
    victim = small_set.items()[0]
    outside.mkdir()
    for file in victim.folder.iterdir():
        (outside / file.name).write_bytes(file.read_bytes())
    before = (outside / "mask.png").read_bytes()
    with sqlite3.connect(small_set.manifest) as db:
        db.execute("UPDATE items SET id=? WHERE id=?", (evil_id, victim.id))
    with pytest.raises(DatasetError, match="not an item id"):
        open_set(small_set.root)
    # A handle opened before the edit (the dashboard keeps none, but a library user may) refuses too.
    with pytest.raises(DatasetError, match="not an item id"):
        small_set.set_mask(evil_id, np.ones((LR * SCALE, LR * SCALE), bool), editor="x")
    with pytest.raises(DatasetError, match="not an item id"):
        small_set.export_zip(tmp_path / "out.zip")
    assert (outside / "mask.png").read_bytes() == before
    assert not (tmp_path / "out.zip").exists()


def test_an_item_folder_that_is_a_link_is_neither_written_nor_packed(small_set, tmp_path):
    victim = small_set.items()[0]
    outside = tmp_path / "outside"
    victim.folder.rename(outside)
    victim.folder.symlink_to(outside, target_is_directory=True)
    before = (outside / "mask.png").read_bytes()
    with pytest.raises(DatasetError, match="is a link"):
        small_set.set_mask(victim.id, np.ones((LR * SCALE, LR * SCALE), bool), editor="x")
    with pytest.raises(DatasetError, match="is a link"):
        small_set.export_zip(tmp_path / "out.zip")
    assert (outside / "mask.png").read_bytes() == before and not (tmp_path / "out.zip").exists()


def test_cli_refuses_a_path_as_an_item_id(small_set, capsys):
    from desra.cli import main

    assert main(["set", "remove", str(small_set.root), "../../x"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("desra: error:") and "not an item id" in err and "\n" not in err


# --- defect 4: set import is bounded and checks what it unpacks ---------------------------------

_RUN_BOUNDED = textwrap.dedent(
    """
    import resource, sys
    resource.setrlimit(resource.RLIMIT_AS, (1536 << 20, 1536 << 20))
    resource.setrlimit(resource.RLIMIT_FSIZE, (32 << 20, 32 << 20))  # a regression is killed by SIGXFSZ
    from desra.repair.set_archive import import_zip
    from desra.core.errors import DatasetError
    try:
        import_zip(sys.argv[1], sys.argv[2])
    except DatasetError as error:
        print(f"DatasetError: {error}")
        sys.exit(3)
    print("imported")
    """
)


def _import_bounded(archive: Path, target: Path, **env: str) -> subprocess.CompletedProcess:
    """``import_zip`` in a subprocess with 1.5 GiB of address space and files of at most 32 MiB."""
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", **env}
    return subprocess.run(
        [sys.executable, "-c", _RUN_BOUNDED, str(archive), str(target)],
        check=False, capture_output=True, text=True, timeout=120, env=environment,
    )


def _bomb(exported: Path, target: Path, size: int) -> tuple[Path, str]:
    """``exported`` with one item's lr.png replaced by a real PNG padded with ``size`` zero bytes (deflated)."""
    name = next(n for n in _entries(exported) if n.endswith("/lr.png"))
    png = _entries(exported)[name]
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as out:
        for other, data in _entries(exported).items():
            if other != name:
                out.writestr(other, data)
        info = zipfile.ZipInfo(name)
        info.compress_type = zipfile.ZIP_DEFLATED
        with out.open(info, "w") as handle:
            handle.write(png)
            zeros = bytes(1 << 20)
            for _ in range(size >> 20):
                handle.write(zeros)
    return target, name


def test_a_zip_bomb_of_one_image_is_refused_from_its_headers(exported, tmp_path):
    archive, _ = _bomb(exported, tmp_path / "bomb.zip", 256 << 20)
    assert archive.stat().st_size < 2 << 20  # ~1 MB that would unpack to 256 MiB
    result = _import_bounded(archive, tmp_path / "imported", DESRA_IMPORT_MAX_BYTES=str(16 << 20))
    assert result.returncode == 3, result.stdout + result.stderr
    assert "above the limit of 16777216" in result.stdout
    assert _left_behind(tmp_path, {"set", "set.zip", "bomb.zip"}) == []


def test_a_zip_whose_header_under_reports_sizes_is_refused_while_unpacking(exported, tmp_path):
    archive, name = _bomb(exported, tmp_path / "liar.zip", 256 << 20)
    data = bytearray(archive.read_bytes())
    # Rewrite the bomb entry's uncompressed size to 1000 bytes in its local and its central header.
    raw_name = name.encode()
    for signature, size_at, name_len_at, name_at in ((b"PK\x03\x04", 22, 26, 30), (b"PK\x01\x02", 24, 28, 46)):
        start = data.find(signature)
        while start != -1:
            name_len = struct.unpack_from("<H", data, start + name_len_at)[0]
            if bytes(data[start + name_at: start + name_at + name_len]) == raw_name:
                struct.pack_into("<I", data, start + size_at, 1000)
            start = data.find(signature, start + 4)
    archive.write_bytes(bytes(data))
    with zipfile.ZipFile(archive) as zf:
        assert zf.getinfo(name).file_size == 1000  # the lie is in place
    result = _import_bounded(archive, tmp_path / "imported")
    assert result.returncode == 3, result.stdout + result.stderr
    assert name in result.stdout and ("damaged" in result.stdout or "forged" in result.stdout)
    assert _left_behind(tmp_path, {"set", "set.zip", "liar.zip"}) == []


def test_a_symlink_entry_is_refused(exported, tmp_path):
    name = next(n for n in _entries(exported) if n.endswith("/lr.png"))
    link = zipfile.ZipInfo(name)
    link.create_system = 3
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    archive = _rezip(exported, tmp_path / "link.zip", {name: (link, b"/etc/passwd")})
    with pytest.raises(DatasetError, match="symbolic link"):
        import_zip(archive, tmp_path / "imported")
    assert _left_behind(tmp_path, {"set", "set.zip", "link.zip"}) == []


def test_a_device_entry_is_refused(exported, tmp_path):
    name = next(n for n in _entries(exported) if n.endswith("/mask.png"))
    device = zipfile.ZipInfo(name)
    device.create_system = 3
    device.external_attr = (stat.S_IFCHR | 0o666) << 16
    archive = _rezip(exported, tmp_path / "dev.zip", {name: (device, b"")})
    with pytest.raises(DatasetError, match="not a regular file"):
        import_zip(archive, tmp_path / "imported")
    assert _left_behind(tmp_path, {"set", "set.zip", "dev.zip"}) == []


def test_thousands_of_tiny_entries_are_refused_from_the_headers(exported, tmp_path, monkeypatch):
    monkeypatch.setenv("DESRA_IMPORT_MAX_ENTRIES", "1000")
    extra = [(f"items/x{i:05d}/lr.png", b"x") for i in range(5000)]
    archive = _rezip(exported, tmp_path / "many.zip", extra=extra)
    with pytest.raises(DatasetError, match=r"holds 5011 entries, above the limit of 1000"):
        import_zip(archive, tmp_path / "imported")
    assert _left_behind(tmp_path, {"set", "set.zip", "many.zip"}) == []
    # The argument wins over the variable, and the limits bound honest sets too.
    with pytest.raises(DatasetError, match="above the limit of 5"):
        import_zip(exported, tmp_path / "imported", max_entries=5)
    assert len(import_zip(exported, tmp_path / "imported", max_entries=11).items()) == 2


def test_a_non_image_named_png_is_refused(exported, tmp_path):
    name = next(n for n in _entries(exported) if n.endswith("/gan.png"))
    archive = _rezip(exported, tmp_path / "fake.zip", {name: b"this is not a PNG\n" * 50})
    with pytest.raises(DatasetError, match="not a readable image") as caught:
        import_zip(archive, tmp_path / "imported")
    assert name in str(caught.value) and ".import-" not in str(caught.value)  # the entry, not the temp folder
    assert _left_behind(tmp_path, {"set", "set.zip", "fake.zip"}) == []


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` RGB pixels but holds (almost) none: a pixel bomb."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def test_an_image_above_the_pixel_limit_is_refused(exported, tmp_path):
    name = next(n for n in _entries(exported) if n.endswith("/pseudo_gt.png"))
    archive = _rezip(exported, tmp_path / "pixels.zip", {name: _png_header_only(12_000, 12_000)})
    with pytest.raises(DatasetError, match="above the limit"):
        import_zip(archive, tmp_path / "imported")
    assert _left_behind(tmp_path, {"set", "set.zip", "pixels.zip"}) == []


def test_an_image_of_the_wrong_size_is_refused(exported, small_set, tmp_path):
    from PIL import Image

    name = next(n for n in _entries(exported) if n.endswith("/mse.png"))
    buffer = io.BytesIO()
    Image.new("RGB", (LR, LR)).save(buffer, "PNG")  # LR size where the row promises x2
    archive = _rezip(exported, tmp_path / "size.zip", {name: buffer.getvalue()})
    with pytest.raises(DatasetError, match="manifest row says 48x48"):
        import_zip(archive, tmp_path / "imported")
    assert _left_behind(tmp_path, {"set", "set.zip", "size.zip"}) == []


def test_other_compressions_and_stray_entries_are_refused(exported, tmp_path):
    # bzip2 and lzma expand a whole read at once, so their memory cannot be bounded: refused.
    archive = _rezip(exported, tmp_path / "bz2.zip", method=zipfile.ZIP_BZIP2)
    with pytest.raises(DatasetError, match="compression method 12"):
        import_zip(archive, tmp_path / "imported")
    stray = _rezip(exported, tmp_path / "stray.zip", extra=[("items/ghost-000000/lr.png", b"x")])
    with pytest.raises(DatasetError, match="does not list"):
        import_zip(stray, tmp_path / "imported")
    assert _left_behind(tmp_path, {"set", "set.zip", "bz2.zip", "stray.zip"}) == []


def test_an_honest_export_still_round_trips(small_set, exported, tmp_path):
    copy = import_zip(exported, tmp_path / "copy")
    assert [i.to_json() for i in copy.items()] == [i.to_json() for i in small_set.items()]
    assert oct(copy.root.stat().st_mode & 0o777) == "0o755"


# --- defect 5 (sets): a damaged manifest is one error line, never a traceback --------------------


def _garbage(manifest: Path) -> None:
    manifest.write_bytes(b"this was a manifest once" * 100)


def _drop_items(manifest: Path) -> None:
    with sqlite3.connect(manifest) as db:
        db.execute("DROP TABLE items")


def _drop_meta(manifest: Path) -> None:
    with sqlite3.connect(manifest) as db:
        db.execute("DROP TABLE meta")


def _text_in_integer(manifest: Path) -> None:
    with sqlite3.connect(manifest) as db:
        db.execute("UPDATE items SET lr_height='tall'")


def _provenance_not_json(manifest: Path) -> None:
    with sqlite3.connect(manifest) as db:
        db.execute("UPDATE items SET provenance='{not json'")


def _unknown_split(manifest: Path) -> None:
    with sqlite3.connect(manifest) as db:
        db.execute("UPDATE items SET split=3")


def _meta_not_json(manifest: Path) -> None:
    with sqlite3.connect(manifest) as db:
        db.execute("UPDATE meta SET value='x4?' WHERE key='scale'")


def _missing_column(manifest: Path) -> None:
    with sqlite3.connect(manifest) as db:
        db.execute("ALTER TABLE items DROP COLUMN mask_source")


CORRUPTIONS = [_garbage, _drop_items, _drop_meta, _text_in_integer, _provenance_not_json, _unknown_split, _meta_not_json, _missing_column]


@pytest.mark.parametrize("corrupt", CORRUPTIONS, ids=lambda f: f.__name__.strip("_"))
@pytest.mark.parametrize("command", ["list", "add", "export", "split"])
def test_a_damaged_manifest_gives_one_error_line(small_set, tmp_path, capsys, corrupt, command, photo):
    from desra.cli import main

    corrupt(small_set.manifest)
    root = str(small_set.root)
    argv = {
        "list": ["set", "list", root, "--all"],
        "add": ["set", "add", root, "--lr", str(tmp_path), "--pair", "desra-demo-x4"],
        "export": ["set", "export", root, str(tmp_path / "out.zip")],
        "split": ["set", "split", root, "--val", "0.5"],
    }[command]
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.startswith("desra: error:") and "\n" not in err, err
    assert str(small_set.manifest) in err
    assert not (tmp_path / "out.zip").exists()
