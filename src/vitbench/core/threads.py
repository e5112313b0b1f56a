"""Intra-op CPU threads of an evaluation: chosen from the work per forward pass and the machine.

PyTorch's default (one intra-op thread per core) suits large tensors on an idle machine. On
small tensors the threads of every operator meet at a barrier: with other processes on the
cores a descheduled thread stalls the others, which spin while they wait. The demo model
(0.0108 GMACs per image, batch 250) ran 8-16x slower beside four busy processes with two
threads, with twice the CPU time; one thread is slowed only by its fair share.

The rule (:func:`auto_threads`): a forward batch of less than :data:`SMALL_WORK_GMACS` GMACs
(dense model, papers' convention, times the evaluation batch size) runs on one thread; a larger
one on every usable core (:func:`usable_cores`: the CPUs this process may run on, shared by the
processes of this machine under ``accelerate launch``). Threads never change a number other
than wall times and throughput (tested: equal logits at 1 and 2 threads).

Only intra-op threads are set: eager evaluation runs no inter-op parallel work, and torch allows
``set_num_interop_threads`` once per process, before any parallel work, so it is left alone.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from vitbench.core.errors import VitbenchError

#: Below this many GMACs per forward batch (dense GMACs per image x batch size) one thread is used.
SMALL_WORK_GMACS = 50.0


def usable_cores(local_processes: int = 1) -> int:
    """CPUs this process may run on, divided among the ``local_processes`` of this machine (>= 1).

    Uses ``os.sched_getaffinity`` (honours ``taskset``, cgroups' cpusets and SLURM bindings),
    ``os.cpu_count()`` where it is missing.
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, cpus // max(1, int(local_processes)))


def local_processes(num_processes: int) -> int:
    """Processes sharing this machine: ``LOCAL_WORLD_SIZE`` (set by torchrun / accelerate) or all."""
    try:
        return max(1, int(os.environ.get("LOCAL_WORLD_SIZE", num_processes)))
    except ValueError:
        return max(1, int(num_processes))


def auto_threads(gmacs_per_image: float, batch_size: int, cores: int) -> int:
    """Intra-op threads for forward batches of ``batch_size`` images of ``gmacs_per_image`` each.

    Args:
        gmacs_per_image: dense model GMACs per image (batch 1, papers' convention).
        batch_size: images per forward pass.
        cores: usable cores (:func:`usable_cores`).

    Returns:
        1 when ``gmacs_per_image * batch_size < SMALL_WORK_GMACS``, else ``cores``.
    """
    if gmacs_per_image * batch_size < SMALL_WORK_GMACS:
        return 1
    return max(1, int(cores))


def thread_count(n: int | str) -> str:
    """``"1 thread"``, ``"4 threads"``: a thread count as text (``n`` as given, e.g. ``"1/2"``)."""
    return f"{n} thread" if str(n) == "1" else f"{n} threads"


def check_threads(value: Any, where: str, fix: str) -> int | None:
    """Validate a thread count: a positive integer, or ``None`` / ``"auto"`` for the automatic rule.

    Args:
        value: the given value.
        where: what gave it, for the message (``--threads``, ``suite.yaml: threads``).
        fix: how to give a good value, ending the message.

    Raises:
        VitbenchError: zero, negative or not an integer.
    """
    if value is None or value == "auto":
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise VitbenchError(f"{where} must be a positive integer or auto, got {value!r}; {fix}")
    return int(value)


@contextlib.contextmanager
def intra_op_threads(n: int | None) -> Iterator[int]:
    """Run the block with ``torch.set_num_threads(n)``; restore the caller's setting afterwards.

    ``None`` leaves the setting as it is. Yields the thread count in effect.
    """
    import torch

    old = torch.get_num_threads()
    if n is not None and n != old:
        torch.set_num_threads(n)
    try:
        yield torch.get_num_threads()
    finally:
        if torch.get_num_threads() != old:
            torch.set_num_threads(old)
