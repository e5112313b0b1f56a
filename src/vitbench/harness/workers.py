"""Cell-parallel worker processes on one machine: a run uses the cores its cells leave idle.

Small models evaluate fastest on one intra-op thread (:func:`vitbench.core.threads.auto_threads`),
which leaves the other cores of a laptop idle. ``vitbench run --workers auto`` (the default) then
splits the cells round-robin across worker processes (``--shard I/N`` of the same command, one
thread each) that write into the same results store; the calling process runs shard 0 itself
and renders the tables once every worker has finished. Each cell is evaluated exactly as in one
process (same images, same seeds, same evaluation threads), so the records are the same.

Workers are not used when they could change a number or fight over a device: under a
distributed launcher or an explicit ``--shard``, on a GPU, when the suite measures throughput
(timings need a quiet machine), or when a cell needs more than one thread.
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from vitbench.core.errors import VitbenchError


@dataclasses.dataclass(frozen=True)
class WorkerPlan:
    """How many processes run the cells, and why (one line for the log)."""

    count: int
    why: str


def plan_workers(
    requested: int | None,
    *,
    cells: int,
    eval_threads: int,
    cores: int,
    throughput: bool,
    launched: bool,
    gpu: bool,
) -> WorkerPlan:
    """The number of cell-parallel processes of a run.

    Args:
        requested: ``--workers N`` (``None``: automatic).
        cells: cells still to evaluate.
        eval_threads: intra-op threads one cell's evaluation uses.
        cores: usable CPU cores of this process.
        throughput: the suite measures throughput (needs a quiet machine).
        launched: under ``accelerate launch``/torchrun or with ``--shard``.
        gpu: cells run on a GPU.

    Returns:
        The plan: ``count`` >= 1 processes (the caller included) and the reason.

    Raises:
        VitbenchError: ``requested`` < 1, or more than one worker where they cannot be used.
    """
    if requested is not None:
        if requested < 1:
            raise VitbenchError(f"--workers {requested}: give a positive number of processes, or auto")
        if requested > 1 and (launched or gpu):
            where = "under a distributed launcher or --shard" if launched else "on a GPU"
            raise VitbenchError(f"--workers {requested} cannot be used {where}; drop --workers")
        n = max(1, min(requested, cells))
        return WorkerPlan(n, "set by --workers")
    for reason, blocked in (
        ("a distributed launch or --shard splits the work", launched),
        ("cells run on a GPU", gpu),
        ("the suite measures throughput (timings need a quiet machine)", throughput),
        (f"each cell uses {eval_threads} threads", eval_threads > 1),
        ("fewer than two cells to run", cells < 2),
        ("one usable core", cores < 2),
    ):
        if blocked:
            return WorkerPlan(1, f"one process: {reason}")
    n = min(cores // max(1, eval_threads), cells)
    return WorkerPlan(n, f"{n} processes, one thread each, on {cores} usable cores")


@dataclasses.dataclass(frozen=True)
class WorkerResult:
    """What one worker process did: its shard, exit code, counts and the tail of its log."""

    index: int
    code: int
    done: int
    skipped: int
    failed: int
    tail: str


_DONE = re.compile(r"done \(shard \d+/\d+\): (\d+) evaluated, (\d+) resumed, (\d+) failed")


class Workers:
    """Worker processes ``1..count-1`` of a run (the caller runs shard 0).

    Args:
        argv: the ``vitbench`` arguments of the run (``["run", SUITE, ...]``).
        count: total processes, the caller included.
        results: the results store every worker writes into.
        threads: evaluation threads of each worker (the caller's choice, recorded alike).
    """

    def __init__(self, argv: Sequence[str], count: int, results: str, threads: int) -> None:
        self.count = count
        self._logs: list[Path] = []
        self._procs: list[subprocess.Popen[bytes]] = []
        self._dir = tempfile.TemporaryDirectory(prefix="vitbench-workers-")
        env = {**os.environ, "LOCAL_WORLD_SIZE": str(count)}
        for i in range(1, count):
            log = Path(self._dir.name) / f"worker-{i}.log"
            cmd = [
                sys.executable,
                "-m",
                "vitbench.cli.main",
                *argv,
                "--shard",
                f"{i}/{count}",
                "--workers",
                "1",
                "--cell-worker",
                "--results",
                results,
                "--threads",
                str(threads),
                "--output-dir",
                "",
                "--no-progress",
            ]
            with log.open("wb") as fh:
                self._procs.append(subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env))
            self._logs.append(log)

    def wait(self) -> list[WorkerResult]:
        """Wait for every worker; their shards' counts, parsed from their last line."""
        out = []
        for i, (proc, log) in enumerate(zip(self._procs, self._logs), start=1):
            code = proc.wait()
            text = log.read_text(errors="replace")
            found = _DONE.findall(text)
            done, skipped, failed = (int(v) for v in found[-1]) if found else (0, 0, 0)
            tail = " | ".join(line for line in text.strip().splitlines()[-3:])
            out.append(WorkerResult(i, code, done, skipped, failed, tail))
        self._dir.cleanup()
        return out

    def stop(self) -> None:
        """Terminate workers still running (the caller was interrupted); their finished cells stay."""
        for proc in self._procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self._procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        self._dir.cleanup()
