"""`desra models list|pull`: the registered SR checkpoints and MSE/GAN pairs, and downloading them."""

from __future__ import annotations


def register(subparsers) -> None:
    """Add ``desra models list`` and ``desra models pull NAME`` to the parser."""
    p = subparsers.add_parser("models", help="list or download registered SR models", description=__doc__)
    sub = p.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    ls = sub.add_parser("list", help="show registered models and pairs and whether they are present locally")
    ls.set_defaults(func=run_list)
    pull = sub.add_parser("pull", help="download a model (or both sides of a pair) into the cache")
    pull.add_argument("name", metavar="NAME", help="model id or pair name (see `desra models list`)")
    pull.set_defaults(func=run_pull)


def run_list(args) -> int:
    from desra import registry
    from desra.paths import models_cache_dir

    models = registry.list_models()
    width = max(len(m.id) for m in models)
    print(f"{'MODEL':{width}s}  {'ARCH':8s} {'SCALE':5s} {'ROLE':4s} {'LICENCE':13s} {'STATUS':8s} PATH")
    for m in models:
        status = "present" if registry.is_present(m) else "missing"
        print(f"{m.id:{width}s}  {m.architecture:8s} x{m.scale:<4d} {m.role:4s} {m.license:13s} {status:8s} {registry.model_path(m)}")
    print()
    pairs = registry.list_pairs()
    width = max(len(p.name) for p in pairs)
    print(f"{'PAIR':{width}s}  {'READY':5s} MSE + GAN")
    for p in pairs:
        ready = all(registry.is_present(registry.get_model(i)) for i in (p.mse, p.gan))
        print(f"{p.name:{width}s}  {'yes' if ready else 'no':5s} {p.mse} + {p.gan}  ({p.description})")
    print(f"\ndownload cache: {models_cache_dir()} (set DESRA_HOME to move it)")
    return 0


def run_pull(args) -> int:
    from tqdm import tqdm

    from desra import registry
    from desra.download import pull
    from desra.errors import UnknownNameError

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
            print(f"{model_id}: already present at {registry.model_path(entry)}")
            continue
        with tqdm(desc=model_id, unit="B", unit_scale=True, unit_divisor=1024, delay=0.5) as bar:

            def progress(done: int, total: int, bar=bar) -> None:
                if total and bar.total != total:
                    bar.reset(total=total)
                bar.update(done - bar.n)

            path = pull(model_id, progress=progress)
        check = "sha256 verified" if entry.sha256 else "sha256 NOT verified: the authors publish no checksum for this file"
        print(f"{model_id}: saved to {path} ({check})")
    return 0
