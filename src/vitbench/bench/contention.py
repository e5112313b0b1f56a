"""``vitbench bench-contention``: the demo's wall time on an idle machine and beside busy processes.

A researcher's laptop or a shared node is never idle. This command runs the demo suite (or every
K-th of its cells) as ``vitbench run`` would, in a child process with its own empty results store
and corruption cache, first alone and then beside ``busy`` processes that each spin one core in a
pure-Python loop (started and stopped by this command, and bounded in time). It prints both wall
times, both CPU times and the ratio; the target is a ratio of at most 3 with two busy processes
on two cores (a fair share of the cores is 2/3 of one core per process).
"""

from __future__ import annotations

import dataclasses
import os
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from vitbench.core.errors import VitbenchError

#: The busy process: one core of pure-Python arithmetic until its deadline (argv[1], seconds).
_BUSY = (
    "import sys, time\n"
    "end = time.monotonic() + float(sys.argv[1])\n"
    "while time.monotonic() < end:\n"
    "    sum(range(10000))\n"
)


@dataclasses.dataclass(frozen=True)
class DemoTiming:
    """One timed demo run.

    Attributes:
        wall_s: wall time of the ``vitbench run`` child process, seconds.
        cpu_s: its user + system CPU time (its own worker processes included), seconds.
        cells: cells recorded without error.
        finished: False when it was stopped at the time limit.
        load_1min: the 1-minute load average just before it started.
    """

    wall_s: float
    cpu_s: float
    cells: int
    finished: bool
    load_1min: float


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _done_cells(store: Path) -> int:
    if not store.is_file():
        return 0
    with sqlite3.connect(f"{store.resolve().as_uri()}?mode=ro", uri=True) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM records WHERE error IS NULL").fetchone()[0])


def time_demo(
    workdir: Path, suite: str, every: int, threads: int | None, limit_s: float, busy: int = 0
) -> DemoTiming:
    """Run ``vitbench run SUITE`` (cells 0, K, 2K, ... with ``every=K``) in a child process.

    ``busy`` pure-Python busy processes run beside it (started just before, stopped just after;
    each also ends on its own after ``limit_s`` + 60 s). Reaped only after the child's CPU time
    is read, so theirs is not counted.
    """
    workdir.mkdir(parents=True)
    store = workdir / "results.sqlite"
    cmd = [sys.executable, "-m", "vitbench.cli.main", "run", suite, "--results", str(store)]
    cmd += ["--output-dir", "", "--no-progress"]
    if every > 1:
        cmd += ["--shard", f"0/{every}"]
    if threads is not None:
        cmd += ["--threads", str(threads)]
    env = {**os.environ, "VITBENCH_CACHE": str(workdir / "cache"), "HF_HUB_OFFLINE": "1"}
    hogs = [
        subprocess.Popen([sys.executable, "-c", _BUSY, str(limit_s + 60)], stdin=subprocess.DEVNULL)
        for _ in range(busy)
    ]
    try:
        load = os.getloadavg()[0]
        cpu0, t0 = _children_cpu_s(), time.perf_counter()
        child = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            _, err = child.communicate(timeout=limit_s)
            finished = True
        except subprocess.TimeoutExpired:
            child.kill()
            _, err = child.communicate()
            finished = False
        wall, cpu = time.perf_counter() - t0, _children_cpu_s() - cpu0
    finally:
        for hog in hogs:
            hog.kill()
        for hog in hogs:
            hog.wait()
    if finished and child.returncode != 0:
        last = (err or "").strip().splitlines()[-1:] or ["no output"]
        raise VitbenchError(f"`{' '.join(cmd)}` exited {child.returncode}: {last[0]}")
    return DemoTiming(wall, cpu, _done_cells(store), finished, load)


def bench_contention(
    busy: int = 2,
    every: int = 1,
    threads: int | None = None,
    limit_s: float = 1200.0,
    suite: str = "demo",
) -> dict[str, DemoTiming]:
    """Time the demo idle, then beside ``busy`` busy processes; print both and the ratio.

    Args:
        busy: busy processes in the second run (>= 1).
        every: run every ``every``-th cell (1: all; a deterministic subset otherwise).
        threads: ``--threads`` of both runs (``None``: vitbench's automatic choice).
        limit_s: time limit of each run, seconds; a run past it is stopped and reported.
        suite: the suite to run (default: the demo).

    Returns:
        ``{"idle": DemoTiming, "busy": DemoTiming}``.

    Raises:
        VitbenchError: bad arguments, or a run failing.
    """
    if busy < 1 or every < 1 or limit_s <= 0:
        raise VitbenchError(
            f"need --busy >= 1, --every >= 1 and --limit-s > 0; got {busy}, {every}, {limit_s:g}"
        )
    if threads is not None and threads < 1:
        raise VitbenchError(f"--threads must be a positive integer or auto, got {threads}; use --threads 1")
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="vitbench-contention-") as tmp:
        idle = time_demo(Path(tmp) / "idle", suite, every, threads, limit_s)
        loaded = time_demo(Path(tmp) / "busy", suite, every, threads, limit_s, busy=busy)
    subset = "all cells" if every == 1 else f"every {every}th cell"
    print(
        f"suite '{suite}' ({subset}), evaluation threads {threads or 'auto'}, {cores} usable cores; "
        "each run in a fresh process with an empty results store and corruption cache"
    )
    for label, t in (("idle", idle), (f"beside {busy} busy processes", loaded)):
        state = "" if t.finished else f"  STOPPED at {limit_s:g} s"
        print(
            f"{label + ':':<28}{t.wall_s:7.1f} s wall, {t.cpu_s:7.1f} s CPU, {t.cells} cells"
            f"  (load average before: {t.load_1min:.2f}){state}"
        )
    ratio = loaded.wall_s / idle.wall_s
    bound = "" if loaded.finished else " (at least: stopped at the limit)"
    print(f"{'ratio (busy / idle wall):':<28}{ratio:7.2f}{bound}  (target <= 3 with 2 busy processes)")
    return {"idle": idle, "busy": loaded}
