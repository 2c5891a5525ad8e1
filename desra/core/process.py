"""Process lifetime helpers shared by the job runner and the torchrun workers."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path


def die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent dies (elsewhere a no-op).

    A job runner's worker or a torchrun worker must not outlive a parent killed with SIGKILL: the job
    a restart requeues, or the run a ``--resume`` starts, would otherwise train beside the orphan and
    both would write the same checkpoints.
    """
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc: existence is all that can be known
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
