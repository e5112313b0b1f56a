"""The costs of a cell: GMACs, parameters, tokens per block and throughput, measured once per setting.

Costs depend on the network a cell runs, not on its images or noise, so every cell of one
(model, method, native params, selection, scope) shares one measurement: GMACs on a real batch-1
forward (the papers' convention, :func:`vitbench.measure.count_gmacs`), parameters and the tokens
entering each block, counted with the cell. Throughput (a synthetic batch, the throughput threads)
is timed in a quiet phase of its own after every cell of the run is evaluated
(:meth:`CellCosts.throughput_of`, driven by :meth:`vitbench.harness.runner.Harness.run`): an
evaluation, a corruption build or a loader never shares the machine with a timing.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

import numpy as np
from torch import nn

from vitbench.core.specs import Cell, ModelSpec, ThroughputSpec
from vitbench.core.threads import intra_op_threads
from vitbench.measure import count_gmacs, count_params_m, measure_throughput


class CellCosts:
    """Cost measurements of the cells of one run, cached per setting.

    Args:
        throughput: the suite's throughput settings (``enabled=False``: no img/s).
        device: where models run (``torch.device`` or its name).
        threads: the throughput threads of a model entry (the harness's thread rule).
    """

    def __init__(self, throughput: ThroughputSpec, device: Any, threads: Callable[[ModelSpec], int]) -> None:
        self.throughput = throughput
        self.device = device
        self._threads = threads
        self._cache: dict[tuple, dict[str, Any]] = {}

    def key(self, cell: Cell, params: Any, scope: tuple[Any, ...] | None = None) -> tuple:
        """What a cell's costs depend on: model entry, method, native params, selection, scope."""
        return (
            cell.model,
            cell.method.name,
            json.dumps(dataclasses.asdict(params), sort_keys=True),
            cell.selection,
            scope,
        )

    def of(
        self,
        cell: Cell,
        model: nn.Module,
        handle: Any,
        params: Any,
        cfg: dict[str, Any],
        scope: tuple[Any, ...] | None = None,
    ) -> dict[str, Any]:
        """Record fields ``gmacs``, ``params_m``, ``tokens_per_block``, ``tokens_kept_frac`` (+ throughput).

        Args:
            cell: the cell (its model entry, method and selection are part of the cache key).
            model: the network the cell evaluates, with its method applied.
            handle: the method's patch handle (tokens per block of the last forward).
            params: the method's final native ``Params`` dataclass.
            cfg: the model's data config (``input_size`` is the counted input, [3, H, W]).
            scope: what else the costs depend on (a pruned model's calibration), part of the key.

        Returns:
            GMACs per image at batch 1, millions of parameters, tokens entering each block (prefix
            tokens included) and their mean fraction of the first block's.
        """
        key = self.key(cell, params, scope)
        if key not in self._cache:
            input_size = tuple(cfg["input_size"])
            handle.set_sample_ids(None)
            gmacs = count_gmacs(model, input_size, device=str(self.device))
            tokens = handle.tokens_per_block
            out: dict[str, Any] = {
                "gmacs": gmacs,
                "params_m": count_params_m(model),
                "tokens_per_block": tokens,
                "tokens_kept_frac": float(np.mean(tokens) / tokens[0]) if tokens and tokens[0] else None,
            }
            self._cache[key] = out
        return self._cache[key]

    def throughput_of(self, cell: Cell, model: nn.Module, handle: Any, cfg: dict[str, Any]) -> dict[str, Any]:
        """Record fields ``img_per_s``, ``ms_per_batch``, ``batch_size``, ``throughput_dtype``, ``threads``.

        Times ``model`` (its method applied, ``handle`` entered) on a synthetic batch of the suite's
        throughput ``batch_size`` at ``cfg``'s input size with the model's throughput threads:
        warm-up discarded, median of ``repeats`` (:func:`vitbench.measure.measure_throughput`).
        """
        tp = self.throughput
        handle.set_sample_ids(None)
        with intra_op_threads(self._threads(cell.model)):  # not the evaluation threads
            res = measure_throughput(
                model,
                tuple(cfg["input_size"]),
                tp.batch_size,
                device=self.device,
                warmup=tp.warmup,
                repeats=tp.repeats,
            )
        return {
            "img_per_s": res.img_per_s,
            "ms_per_batch": res.ms_per_batch,
            "batch_size": res.batch_size,
            "throughput_dtype": res.dtype,
            "threads": res.threads,
        }
