"""Scale-out: shard a suite's cells across processes or machines; merge results stores.

Two ways to spread a sweep (they combine with resume, since every record has a unique cell key):

* **data-parallel** (the default under ``accelerate launch``): every process runs every cell
  on its slice of the data; predictions are gathered; the main process writes.
* **cell-parallel** (``vitbench run --shard I/N`` or ``--shard auto``): process ``I`` of ``N``
  runs cells ``I, I+N, I+2N, ...`` of the suite's stable cell order on the whole data set,
  alone on its own device. ``auto`` takes ``I/N`` from ``RANK``/``WORLD_SIZE`` (torchrun,
  ``accelerate launch``) or ``SLURM_PROCID``/``SLURM_NTASKS``. Shards on one machine can share
  one SQLite store; shards on several machines write their own and ``vitbench merge`` joins them.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vitbench.core.errors import VitbenchError
from vitbench.store.results import ResultsStore

_DIST_ENV = (
    "RANK",
    "WORLD_SIZE",
    "LOCAL_RANK",
    "LOCAL_WORLD_SIZE",
    "GROUP_RANK",
    "ROLE_RANK",
    "ROLE_WORLD_SIZE",
    "MASTER_ADDR",
    "MASTER_PORT",
    "TORCHELASTIC_RUN_ID",
)


def parse_shard(text: str, env: dict[str, str] | None = None) -> tuple[int, int, int]:
    """``"I/N"`` or ``"auto"`` -> ``(index, count, local index)``.

    Raises:
        VitbenchError: malformed text, ``I`` outside ``0..N-1``, or ``auto`` outside a launcher.
    """
    env = dict(os.environ) if env is None else env
    if text == "auto":
        for rank, world, local in (
            ("RANK", "WORLD_SIZE", "LOCAL_RANK"),
            ("SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID"),
        ):
            if rank in env and world in env:
                return int(env[rank]), int(env[world]), int(env.get(local, env[rank]))
        return 0, 1, 0
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise VitbenchError(f"--shard {text!r}: use I/N (e.g. 0/4) or auto") from None
    if n < 1 or not 0 <= i < n:
        raise VitbenchError(f"--shard {text}: need 0 <= I < N, got I={i}, N={n}")
    return i, n, i


def shard_cells(cells: Sequence[Any], index: int, count: int) -> list[Any]:
    """Cells ``index, index + count, ...`` of ``cells`` (round-robin: shards get similar mixes)."""
    return list(cells[index::count])


def solo_accelerator(local_index: int) -> Any:
    """An ``Accelerator`` for this process alone (no process group), on GPU ``local_index`` if any.

    The launcher's rendezvous variables are removed from the environment first, so accelerate
    does not join the other processes: in cell-parallel mode each process is its own main process.
    """
    import torch
    from accelerate import Accelerator

    for key in _DIST_ENV:
        os.environ.pop(key, None)
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(local_index % torch.cuda.device_count())
    return Accelerator(cpu=not cuda)


def results_path(template: str, index: int, count: int) -> str:
    """``template`` with ``{shard}`` replaced by ``I-of-N`` (one store per shard when asked)."""
    return template.replace("{shard}", f"{index}-of-{count}")


@dataclasses.dataclass
class MergeSummary:
    """Counts of a merge: records added, replaced (an error by a success), kept, and disagreements."""

    added: int = 0
    replaced: int = 0
    kept: int = 0
    disagreements: list[str] = dataclasses.field(default_factory=list)


def merge_stores(target: str | Path, sources: Sequence[str | Path]) -> MergeSummary:
    """Merge the records of ``sources`` into the store ``target`` (created if needed).

    Per cell key: a new key is added; a successful record replaces a failed one; otherwise
    the record already in ``target`` is kept. Two successful records of one key whose top-1
    differ are listed in ``disagreements`` (same cell, different result: different weights,
    data or code — check provenance).

    Raises:
        VitbenchError: a source is missing, not a vitbench store, or of another schema version.
    """
    out = MergeSummary()
    target = Path(target)
    if any(Path(s).resolve() == target.resolve() for s in sources if target.exists()):
        raise VitbenchError(f"merge target {target} is also a source; write into a new file")
    read = []
    for src in sources:  # every source is read (and validated) before the target is touched
        with ResultsStore(src, readonly=True) as source:  # path, schema, columns, damage
            read.append((src, source.records(), source.samples()))
    with ResultsStore(target) as store:
        have = {str(r["cell_key"]): (r["error"], r["top1"]) for r in store.records()}
        for src, records, samples in read:
            for rec in records:
                key = str(rec["cell_key"])
                if key not in have:
                    out.added += 1
                elif have[key][0] is not None and rec["error"] is None:
                    out.replaced += 1
                else:
                    out.kept += 1
                    old_top1 = have[key][1]
                    if rec["error"] is None and have[key][0] is None and old_top1 != rec["top1"]:
                        out.disagreements.append(f"{key}: top1 {old_top1} vs {rec['top1']} ({src})")
                    continue
                store.write(rec, samples=samples.get(key))
                have[key] = (rec["error"], rec["top1"])
    return out
