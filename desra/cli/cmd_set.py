"""`desra set`: build and manage curated fine-tune sets (create, add, split, list, remove, restore, export, import)."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path


def _match(folder_or_file: Path | None, stem: str, single: bool) -> Path | None:
    """The mask file for the LR image ``stem``: the file itself, or ``<stem>.png`` / ``<stem>_mask.png`` in a folder."""
    from desra.core.errors import DatasetError

    if folder_or_file is None:
        return None
    if folder_or_file.is_file():
        if not single:
            raise DatasetError(
                f"{folder_or_file} is one mask file but --lr names a folder; give a folder of masks named after the LR images"
            )
        return folder_or_file
    for candidate in (folder_or_file / f"{stem}.png", folder_or_file / f"{stem}_mask.png"):
        if candidate.is_file():
            return candidate
    return None


def _add(args) -> int:
    from tqdm import tqdm

    from desra.cli.shared import ray_options
    from desra.core.errors import DatasetError, DesraError
    from desra.core.imageio import list_images, read_mask
    from desra.models.pairs import choose_pair
    from desra.repair.curated import open_set
    from desra.service.detection import resolve_semantics
    from desra.service.ray_engine import prepare_files_ray
    from desra.service.sets import prepare_files, store_image

    on_ray = ray_options(args)
    curated = open_set(args.dir)
    models = choose_pair(args.pair, args.mse_model, args.gan_model, device=args.device)
    single = args.lr.is_file()
    files = [args.lr] if single else list_images(args.lr)
    if not files:
        raise DatasetError(f"no images found in {args.lr}")
    config = _detect_config(args)
    semantics = None
    if args.mask is None:  # with masks given nothing is detected, so no segmenter is loaded
        semantics = resolve_semantics(args.segmenter, class_weights=args.class_weights or models.class_weights,
                                      device=args.device)
        if semantics.note is not None:
            print(f"desra: warning: semantic adjustment not used: {semantics.note}", file=sys.stderr)
    # Each file's mask and label are found first; the engine (here, or Ray) prepares the files found (SR,
    # detection) and they are stored here, in file order, as they come.
    found = []
    for path in files:
        try:
            mask_path = _match(args.mask, path.stem, single)
            if args.mask is not None and mask_path is None:
                raise DatasetError(f"no mask for {path.name} in {args.mask} (looked for {path.stem}.png, {path.stem}_mask.png)")
            found.append((path, mask_path, _match(args.label, path.stem, single), None))
        except DesraError as error:
            if single:
                raise
            found.append((path, None, None, error))
    todo = [(path, mask_path) for path, mask_path, _, refused in found if refused is None]
    kwargs = {"config": config, "semantics": semantics, "tile": args.tile}
    prepared = prepare_files(todo, models, **kwargs) if on_ray is None else prepare_files_ray(todo, models, options=on_ray, **kwargs)
    failures = []
    with contextlib.closing(prepared):  # a local Ray the engine started stops even when one file stops the command
        for path, mask_path, label_path, refused in tqdm(found, desc="adding", unit="image", disable=len(files) < 2):
            try:
                result = refused or next(prepared)
                if isinstance(result, DesraError):
                    raise result
                lr, image = result
                provenance = {"lr_file": str(path.resolve())}
                if mask_path:
                    provenance["mask_file"] = str(mask_path.resolve())
                item = store_image(
                    curated, path.stem, lr, image, label=read_mask(label_path) if label_path else None,
                    split=args.split, provenance=provenance,
                )
                print(f"added {item.id}  split {item.split}  mask {100 * item.mask_fraction:.2f} % ({item.mask_source})")
            except DesraError as error:
                if single:
                    raise
                failures.append(f"{path.name}: {error}")
    for failure in failures:
        print(f"refused {failure}")
    return 2 if failures else 0


def _detect_config(args):
    from desra.detect.pipeline import DetectConfig

    overrides = {k: v for k, v in (("threshold", args.threshold), ("min_area", args.min_area)) if v is not None}
    return DetectConfig(device=args.device, **overrides)


def _create(args) -> int:
    from desra.repair.curated import create_set

    curated = create_set(args.dir, description=args.description, scale=args.scale)
    print(f"created an empty curated set in {curated.root}")
    return 0


def _split(args) -> int:
    from desra.repair.curated import open_set

    counts = open_set(args.dir).split(args.val, seed=args.seed)
    print(f"train {counts['train']}  val {counts['val']}")
    return 0


def _list(args) -> int:
    from desra.repair.curated import open_set

    curated = open_set(args.dir)
    items = curated.items(include_deleted=args.all)
    if args.json:
        print(json.dumps({"root": str(curated.root), "scale": curated.scale, "items": [i.to_json() for i in items]}, indent=2))
        return 0
    print(f"{curated.root}: x{curated.scale or '?'}, {len(items)} items")
    for item in items:
        flags = " deleted" if item.deleted else ""
        flags += " labelled" if item.labelled else ""
        print(f"{item.id:<32} {item.split:<5} {item.lr_size[1]}x{item.lr_size[0]}  mask {100 * item.mask_fraction:6.2f} %  {item.mask_source}{flags}")
    return 0


def _remove(args) -> int:
    from desra.repair.curated import open_set

    item = open_set(args.dir).remove(args.item)
    print(f"removed {item.id} (undo with `desra set restore {args.dir} {item.id}`)")
    return 0


def _restore(args) -> int:
    from desra.repair.curated import open_set

    item = open_set(args.dir).restore(args.item)
    print(f"restored {item.id}")
    return 0


def _export(args) -> int:
    from desra.repair.curated import open_set

    path = open_set(args.dir).export_zip(args.zip)
    print(f"exported to {path}")
    return 0


def _import(args) -> int:
    from desra.repair.set_archive import import_zip

    curated = import_zip(args.zip, args.dir)
    print(f"imported {len(curated.items(include_deleted=True))} items into {curated.root}")
    return 0


def register(subparsers) -> None:
    """Add `desra set ...` to the `desra` parser."""
    from desra.cli.shared import (
        add_class_weights_option,
        add_engine_options,
        add_segmenter_option,
    )

    parser = subparsers.add_parser("set", help="curated fine-tune sets (LR, MSE-SR, GAN-SR, mask, pseudo-GT)")
    group = parser.add_subparsers(dest="set_command", metavar="ACTION")

    p = group.add_parser("create", help="make an empty set in a new folder")
    p.add_argument("dir", type=Path)
    p.add_argument("--description", default="")
    p.add_argument("--scale", type=int, default=None, help="fix the scale now (default: from the first item)")
    p.set_defaults(func=_create)

    p = group.add_parser("add", help="add LR images: run the pair, detect artifacts (or take --mask), store the pseudo-GT")
    p.add_argument("dir", type=Path)
    p.add_argument("--lr", type=Path, required=True, help="an LR image or a folder of them")
    p.add_argument("--pair", default=None, help="registered model pair, e.g. desra-demo-x4")
    p.add_argument("--mse-model", default=None, help="MSE-SR checkpoint or registry id")
    p.add_argument("--gan-model", default=None, help="GAN-SR checkpoint or registry id")
    p.add_argument("--mask", type=Path, default=None, help="artifact mask PNG at SR size (or a folder, by stem); skips detection")
    p.add_argument("--label", type=Path, default=None, help="labelled mask PNG at SR size (or folder) kept for evaluate-run")
    p.add_argument("--split", choices=("train", "val"), default="train")
    add_segmenter_option(p)
    add_class_weights_option(p)
    p.add_argument("--threshold", type=float, default=None, help="detector threshold (default 0.7)")
    p.add_argument("--min-area", type=int, default=None, help="detector minimum region area in SR pixels")
    p.add_argument("--device", default="cpu")
    p.add_argument("--tile", type=int, default=None, help="SR tile size for large images")
    add_engine_options(p)
    p.set_defaults(func=_add)

    p = group.add_parser("split", help="assign items to train/val at random")
    p.add_argument("dir", type=Path)
    p.add_argument("--val", type=float, required=True, help="fraction for validation (the paper: 0.75)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_split)

    p = group.add_parser("list", help="list items")
    p.add_argument("dir", type=Path)
    p.add_argument("--all", action="store_true", help="include removed items")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_list)

    p = group.add_parser("remove", help="soft-delete an item (undo with restore)")
    p.add_argument("dir", type=Path)
    p.add_argument("item")
    p.set_defaults(func=_remove)

    p = group.add_parser("restore", help="undo a remove")
    p.add_argument("dir", type=Path)
    p.add_argument("item")
    p.set_defaults(func=_restore)

    p = group.add_parser("export", help="write the set to a zip")
    p.add_argument("dir", type=Path)
    p.add_argument("zip", type=Path)
    p.set_defaults(func=_export)

    p = group.add_parser(
        "import",
        help="unpack an exported zip into a new folder",
        description=(
            "Unpack a zip made by `desra set export` into a new folder, checking everything first: at most "
            "$DESRA_IMPORT_MAX_BYTES uncompressed bytes (default 8 GiB) and $DESRA_IMPORT_MAX_ENTRIES entries "
            "(default 60001), only the manifest and its items' PNGs, no links or devices, every image decodable "
            "within $DESRA_MAX_PIXELS at its manifest size. A refused archive leaves nothing behind."
        ),
    )
    p.add_argument("zip", type=Path)
    p.add_argument("dir", type=Path)
    p.set_defaults(func=_import)
    parser.set_defaults(func=lambda args: parser.print_help() or 2)
