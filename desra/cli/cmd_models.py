"""`desra models list|pull|import-ncnn`: the registered SR checkpoints and MSE/GAN pairs, downloading them,
and importing published networks shipped in ncnn format (.param + .bin)."""

from __future__ import annotations

import sys


def register(subparsers) -> None:
    """Add ``desra models list`` and ``desra models pull NAME`` to the parser."""
    p = subparsers.add_parser("models", help="list or download registered SR models", description=__doc__)
    sub = p.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    ls = sub.add_parser("list", help="show registered models and pairs and whether they are present locally")
    ls.set_defaults(func=run_list)
    pull = sub.add_parser("pull", help="download a model (or both sides of a pair) into the cache")
    pull.add_argument("name", metavar="NAME", help="model id or pair name (see `desra models list`)")
    pull.set_defaults(func=run_pull)
    imp = sub.add_parser(
        "import-ncnn",
        help="convert an ncnn .param/.bin (RRDBNet x4 or SRVGGNetCompact) into a desra model in the cache",
        description="Map an ncnn graph onto desra's RRDBNet / SRVGGNetCompact and write "
        "$DESRA_HOME/models/NAME.safetensors (atomic; nothing is written when the files do not fit).",
    )
    imp.add_argument("param", metavar="PARAM", help="ncnn .param text file")
    imp.add_argument("--bin", dest="bin_path", metavar="BIN", default=None, help="ncnn .bin weights (default: PARAM with .bin)")
    imp.add_argument("--name", required=True, help="model name; the file is NAME.safetensors in the models cache")
    imp.add_argument("--role", choices=("mse", "gan"), default=None, help="mse (L1/MSE-trained parent) or gan")
    imp.add_argument("--license", default="unknown", help="licence of the weights, recorded in the metadata (SPDX id)")
    imp.set_defaults(func=run_import_ncnn)


def run_list(args) -> int:
    from desra.core.paths import models_cache_dir
    from desra.models import registry

    models = registry.list_models()
    sources = {m.id: registry.model_source(m) for m in models}
    width = max(len(m.id) for m in models)
    print(f"{'MODEL':{width}s}  {'ARCH':8s} {'SCALE':5s} {'ROLE':4s} {'LICENCE':13s} {'STATUS':11s} PATH  (ORIGIN)")
    for m in models:
        src = sources[m.id]
        print(f"{m.id:{width}s}  {m.architecture:8s} x{m.scale:<4d} {m.role:4s} {m.license:13s} {src.status:11s} {src.path}  ({src.note})")
    print()
    pairs = registry.list_pairs()
    width = max(len(p.name) for p in pairs)
    print(f"{'PAIR':{width}s}  {'READY':5s} MSE + GAN")
    for p in pairs:
        ready = all(registry.is_available(registry.get_model(i)) for i in (p.mse, p.gan))
        print(f"{p.name:{width}s}  {'yes' if ready else 'no':5s} {p.mse} + {p.gan}  ({p.description})")
    print(f"\ndownload cache: {models_cache_dir()} (set DESRA_HOME to move it)")
    return 0


def run_pull(args) -> int:
    from tqdm import tqdm

    from desra.core.errors import UnknownNameError
    from desra.models import registry
    from desra.models.download import pull

    try:
        ids = [registry.get_model(args.name).id]
    except UnknownNameError:
        try:
            pair = registry.get_pair(args.name)
        except UnknownNameError:
            known = [m.id for m in registry.list_models()] + [p.name for p in registry.list_pairs()]
            raise UnknownNameError(f"{args.name!r} is neither a registered model nor a pair; known: {', '.join(known)}") from None
        ids = [pair.mse, pair.gan]
    for model_id in ids:
        entry = registry.get_model(model_id)
        if registry.is_present(entry):
            print(f"{model_id}: already present at {registry.local_file(entry)} ({registry.model_source(entry).note})")
            continue
        with tqdm(desc=model_id, unit="B", unit_scale=True, unit_divisor=1024, delay=0.5) as bar:

            def progress(done: int, total: int, bar=bar) -> None:
                if total and bar.total != total:
                    bar.reset(total=total)
                bar.update(done - bar.n)

            path = pull(model_id, progress=progress, notify=lambda line, model_id=model_id: print(f"{model_id}: {line}", file=sys.stderr))
        if path != registry.model_path(entry):
            print(f"{model_id}: saved to {path} ({registry.model_source(entry).note}; fp16 weights)")
            continue
        check = "sha256 verified" if entry.sha256 else "sha256 NOT verified: the authors publish no checksum for this file"
        print(f"{model_id}: saved to {path} ({check})")
    return 0


def run_import_ncnn(args) -> int:
    from desra.models.ncnn_import import import_to_cache

    dest, result = import_to_cache(args.param, args.bin_path, name=args.name, role=args.role or "unknown", license=args.license)
    mapping = result.mapping
    params = ", ".join(f"{k}={v}" for k, v in mapping.arch_params.items())
    count = sum(v.size for v in result.state_dict.values())
    print(f"{args.name}: {mapping.architecture} ({params}), {count / 1e6:.2f} M parameters, {result.precision} weights")
    print(f"saved to {dest} (param sha256 {result.param_sha256[:12]}..., bin sha256 {result.bin_sha256[:12]}...)")
    print(f"use it with: desra sr --model {dest} --input IMAGE --output OUT.png")
    return 0
