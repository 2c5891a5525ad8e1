"""Curated sets: add/list/split, scale checks, soft delete with undo, mask edits, zip round trip, crash leftovers."""

import os
import zipfile

import numpy as np
import pytest

from desra.core.errors import DatasetError, PairMismatchError
from desra.repair.curated import create_set, open_set
from desra.repair.set_archive import import_zip


def test_items_hold_images_and_pseudo_gt(curated_set):
    curated = open_set(curated_set.root)  # reopened from disk
    assert curated.scale == 4
    assert [i.split for i in curated.items()] == ["train", "train", "val", "val"]
    item = curated.items()[0]
    arrays = curated.load(item.id)
    assert arrays.lr.shape == (32, 32, 3) and arrays.mse.shape == (128, 128, 3)
    # Eq. 10 as stored: MSE inside the mask, GAN outside (up to 8-bit rounding of the PNGs).
    np.testing.assert_allclose(arrays.pseudo_gt[arrays.mask], arrays.mse[arrays.mask], atol=1 / 255)
    np.testing.assert_allclose(arrays.pseudo_gt[~arrays.mask], arrays.gan[~arrays.mask], atol=1 / 255)
    assert item.mask_source == "file" and item.provenance == {"by": "test"}
    assert curated.items()[3].labelled and not curated.items()[0].labelled
    # The label stored is the one given (build_set labels the last item with its mask), not just any mask.
    labelled = curated.load(curated.items()[3].id)
    np.testing.assert_array_equal(labelled.label, labelled.mask)
    assert labelled.label.any() and not labelled.label.all() and arrays.label is None


def test_scale_mismatch_is_refused_when_added(curated_set, photo, item_maker):
    lr, mse, gan, mask = item_maker(photo("astronaut"))
    before = len(curated_set.items())
    with pytest.raises(PairMismatchError, match="exactly 128x128"):
        curated_set.add("bad", lr, mse[:, :127], gan[:, :127], mask[:, :127], mask_source="file", provenance={})
    with pytest.raises(PairMismatchError, match="x2"):  # a x2 item cannot join a x4 set
        curated_set.add("bad", lr, mse[:64, :64], gan[:64, :64], mask[:64, :64], mask_source="file", provenance={}, scale=2)
    assert len(curated_set.items()) == before
    assert sorted(os.listdir(curated_set.root / "items")) == sorted(i.id for i in curated_set.items())


def test_soft_delete_and_undo(curated_set):
    victim = curated_set.items()[1]
    curated_set.remove(victim.id)
    assert victim.id not in [i.id for i in curated_set.items()]
    assert curated_set.item(victim.id).deleted and victim.folder.exists()
    curated_set.restore(victim.id)
    assert victim.id in [i.id for i in curated_set.items("train")]


def test_split_is_seeded_and_complete(curated_set):
    assert curated_set.split(0.75, seed=3) == {"train": 1, "val": 3}
    first = [i.split for i in curated_set.items()]
    curated_set.split(0.75, seed=3)
    assert [i.split for i in curated_set.items()] == first
    with pytest.raises(DatasetError):
        curated_set.split(1.5)


def test_mask_edit_recomputes_pseudo_gt_and_keeps_provenance(curated_set):
    item = curated_set.items()[0]
    new_mask = np.zeros((128, 128), dtype=bool)
    new_mask[:16, :16] = True
    edited = curated_set.set_mask(item.id, new_mask, editor="alice", note="tighter")
    arrays = curated_set.load(item.id)
    assert edited.mask_source == "edited" and edited.provenance["edits"][0]["editor"] == "alice"
    np.testing.assert_array_equal(arrays.mask, new_mask)
    np.testing.assert_allclose(arrays.pseudo_gt[~new_mask], arrays.gan[~new_mask], atol=1 / 255)


def test_zip_round_trip(curated_set, tmp_path):
    curated_set.remove(curated_set.items()[0].id)
    archive = curated_set.export_zip(tmp_path / "set.zip")
    copy = import_zip(archive, tmp_path / "copy")
    assert [i.to_json() for i in copy.items(include_deleted=True)] == [i.to_json() for i in curated_set.items(include_deleted=True)]
    np.testing.assert_array_equal(copy.load(copy.items()[0].id).lr, curated_set.load(curated_set.items()[0].id).lr)
    with pytest.raises(DatasetError):
        import_zip(archive, tmp_path / "copy")  # not empty any more


def test_import_refuses_unsafe_or_foreign_zips(tmp_path):
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as archive:
        archive.writestr("manifest.sqlite", b"")
        archive.writestr("../escape.txt", b"x")
    with pytest.raises(DatasetError, match="unexpected entry"):
        import_zip(evil, tmp_path / "target")
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path / "target").exists()


def test_killed_add_leaves_no_item(curated_set):
    # What a kill -9 between writing an item's files and committing it leaves: a staging folder of
    # a dead process. Reopening the set removes it and lists nothing new.
    leftover = curated_set.root / ".staging" / "999999999-half-abc123"
    leftover.mkdir(parents=True)
    (leftover / "lr.png").write_bytes(b"\x89PNG half")
    before = [i.id for i in curated_set.items()]
    reopened = open_set(curated_set.root)
    assert not leftover.exists()
    assert [i.id for i in reopened.items()] == before


def test_create_refuses_existing_sets_and_open_refuses_non_sets(tmp_path, curated_set):
    with pytest.raises(DatasetError):
        create_set(curated_set.root)
    with pytest.raises(DatasetError):
        open_set(tmp_path / "nothing-here")
