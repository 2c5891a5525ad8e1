"""What several commands share: progress bars (the library's ``progress(done, total)`` drawn with tqdm
on stderr), the ``--segmenter`` and ``--class-weights`` options, spelled and defaulted alike wherever
detection runs, and the ``--workspace`` default of the commands that take one."""

from __future__ import annotations

import contextlib
import sys


def workspace_of(args):
    """The workspace a command works in: ``--workspace``, else ``$DESRA_WORKSPACE`` or ./desra-workspace."""
    from pathlib import Path

    from desra.core.paths import default_workspace

    return Path(args.workspace) if args.workspace else default_workspace()


def add_segmenter_option(parser) -> None:
    """Add ``--segmenter ID|PATH|none`` (default ``b5``) to an argparse parser."""
    from desra.service.detection import DEFAULT_SEGMENTER

    parser.add_argument("--segmenter", default=DEFAULT_SEGMENTER, metavar="ID|PATH|none",
                        help="SegFormer hub id, local folder, 'b5' (default, the authors'), 'b0' (fast) or 'none'")


def add_class_weights_option(parser) -> None:
    """Add ``--class-weights TSV`` (default: the pair's table, else the authors') to an argparse parser."""
    parser.add_argument("--class-weights", metavar="TSV", default=None,
                        help="per-class A_k table (default: the pair's, else the authors' ADE20K table)")


class _NoBar:
    """What progress_bar gives for one item: a bar that draws nothing (and tqdm is not imported)."""

    def __init__(self) -> None:
        self.n = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None

    def update(self, count: int = 1) -> None:
        """Count ``count`` more items done."""
        self.n += count

    def close(self) -> None:
        """Nothing to clear."""


def progress_bar(total: int, desc: str):
    """A tqdm bar on stderr (shown only for more than one item)."""
    if total <= 1:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="img", file=sys.stderr)


@contextlib.contextmanager
def progress_callback(desc: str):
    """Yield a library-style ``progress(done, total)`` callback drawing a tqdm bar on stderr."""
    bar = None

    def tick(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = progress_bar(total, desc)
        bar.update(done - bar.n)

    try:
        yield tick
    finally:
        if bar is not None:
            bar.close()


def add_engine_options(parser) -> None:
    """Add ``--engine local|ray``, ``--address ADDR`` and ``--gpus-per-worker F`` to a batch command's parser."""
    parser.add_argument("--engine", choices=("local", "ray"), default="local",
                        help="local: one process here (default); ray: a Ray Data pipeline on a local Ray or the "
                             "cluster at --address, same outputs (pip install 'desra[ray]'; see docs/scale.md)")
    parser.add_argument("--address", metavar="ADDR", default=None,
                        help="with --engine ray: join the Ray cluster at ADDR ('auto', HOST:6379, ray://HOST:10001) "
                             "instead of starting a local Ray")
    parser.add_argument("--gpus-per-worker", type=float, default=None, metavar="F",
                        help="with --engine ray on CUDA: GPU share of each SR and each detect actor "
                             "(default 0.5: one of each per GPU)")


def ray_options(args):
    """The ``RayOptions`` of ``--engine ray`` (Ray's presence checked now, before any work), or None for the local engine."""
    from desra.core.errors import ConfigError

    if args.engine != "ray":
        if args.address or args.gpus_per_worker is not None:
            raise ConfigError("--address and --gpus-per-worker set up the Ray engine: add --engine ray, or leave them out")
        return None
    from desra.service.ray_engine import RayOptions, import_ray

    import_ray()
    share = {} if args.gpus_per_worker is None else {"gpus_per_worker": args.gpus_per_worker}
    return RayOptions(address=args.address, **share)
