"""Suite -> cells -> evaluate -> records, with resume, per-cell error capture and accelerate.

Each cell builds (or reuses) its model, applies its method through the method contract,
evaluates the dataset under its noise, measures GMACs on a real batch-1 forward and throughput
on a synthetic batch, and writes one record. A failing cell is recorded with its error and the
sweep goes on; re-running a suite skips cells already recorded without error. With
``accelerate launch`` the data is split across processes, predictions are gathered with
``gather_for_metrics`` and only the main process writes.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from typing import Any, Literal, Protocol, cast

import numpy as np
import torch
from torch import nn

from vitbench.core.digests import state_digest, weights_digest
from vitbench.core.errors import VitbenchError
from vitbench.core.models import (
    DATA_CONFIG_KEYS,
    HF_HUB_PREFIX,
    check_classes,
    check_model_spec,
    data_config,
    model_from_spec,
)
from vitbench.core.specs import Cell, MethodSpec, ModelSpec, SuiteSpec
from vitbench.core.threads import SMALL_WORK_GMACS, auto_threads, intra_op_threads, usable_cores
from vitbench.core.threads import local_processes as local_processes_of
from vitbench.data import FileImageSet, ImageSet, default_workers
from vitbench.data.cache import CacheKey, CorruptionCache
from vitbench.data.classes import dataset_class_digest
from vitbench.data.samples import to_tensor
from vitbench.data.subsets import ArraySamples
from vitbench.harness.costs import CellCosts
from vitbench.harness.inputs import CellInputs
from vitbench.harness.pruned import PrunedModels, calibration_source
from vitbench.harness.runtime_phase import run_runtime_phase
from vitbench.harness.trained import TrainedParts
from vitbench.measure import classification_metrics, count_gmacs, self_check
from vitbench.methods import METHODS
from vitbench.methods.base import ChannelMethod, Method, NoParams, TokenMethod, make_params
from vitbench.methods.requirements import check_pairs
from vitbench.methods.trainable import TrainableMethod
from vitbench.store.pending import PendingStore
from vitbench.store.per_sample import PerSample
from vitbench.store.results import config_hash, provenance

#: Record fields a keep-1.0 token cell takes from the dense record it reuses (what the images gave).
REUSED_FIELDS: tuple[str, ...] = (
    "n_samples",
    "sample_ids_hash",
    "data_config",
    "top1",
    "top5",
    "nll",
    "ece",
    "top1_ci_low",
    "top1_ci_high",
)


def dense_twin(cell: Cell) -> Cell | None:
    """The ``dense`` cell whose record ``cell`` reuses, or ``None`` when ``cell`` is evaluated.

    Keep ratio 1.0 of a token method is the unmodified model: the method contract requires
    bit-identical logits there for every selection (the conformance kit's ``token_identity``
    check), so its accuracy is the dense record's on the same images, noise and seed. Cells with
    explicit native parameters (``--set``/``params``), trainable methods (their parts come from
    an artifact), methods whose keep 1.0 is not the identity (their conformance declares the
    ``identity`` check an expected failure, e.g. ATS) and channel methods are evaluated.
    """
    if cell.keep_ratio != 1.0 or cell.method.params or cell.method.name == "dense":
        return None
    if cell.method.name not in METHODS or "dense" not in METHODS:
        return None
    cls = METHODS.get(cell.method.name)
    if not issubclass(cls, TokenMethod) or cls.trainable:
        return None
    if "identity" in dict(cls.conformance.expected_failures):
        return None  # keep 1.0 is not the dense model for this method (e.g. ATS): evaluate it
    return dataclasses.replace(cell, method=MethodSpec("dense"), selection="scored")


@dataclasses.dataclass(frozen=True)
class CellResult:
    """What evaluating one cell produced.

    Attributes:
        fields: record fields measured by the cell (metrics, costs, params, wall time), without
            the identity fields of :meth:`Harness.identity` and without provenance.
        samples: per-sample correctness and predictions, stored beside the record.
    """

    fields: dict[str, Any]
    samples: PerSample | None = None


@dataclasses.dataclass(frozen=True)
class CellModel:
    """What one cell evaluates and measures.

    Attributes:
        model: the network (the shared dense model patched by a token method, or a pruned copy).
        params: the method's final native ``Params`` (trained artifact filled in, if any).
        apply: the patch context entered around evaluation and cost counting; it yields the
            :class:`~vitbench.methods.patching.patch.Handle` (sample ids, tokens per block).
        cost_scope: what the cell's costs depend on beyond (model, method, params, selection):
            ``None``, or for a pruned model its calibration (calibration noise, seed).
        fields: record fields describing how the model was made (a pruned model's calibration
            images, :func:`~vitbench.harness.pruned.calibration_source`).
    """

    model: nn.Module
    params: Any
    apply: Any
    cost_scope: tuple[Any, ...] | None = None
    fields: dict[str, Any] = dataclasses.field(default_factory=dict)


class CellBuilder(Protocol):
    """Builds a cell's :class:`CellModel` from its method, native params and the dense model."""

    def __call__(self, cell: Cell, method: type[Method], params: Any, dense: nn.Module) -> CellModel:
        """The model, final params and patch context of ``cell`` (the patch applies on entering it)."""
        ...


@dataclasses.dataclass
class RunSummary:
    """What a run did: cells evaluated, skipped (already recorded) and failed."""

    done: int = 0
    skipped: int = 0
    failed: int = 0
    errors: list[str] = dataclasses.field(default_factory=list)


class Harness:
    """Runs the cells of one suite into one results store.

    Args:
        suite: the validated suite.
        results: path of the SQLite results store.
        accelerator: an ``accelerate.Accelerator`` (created when ``None``).
        progress: show tqdm bars on the main process.
        log: where one-line messages go (main process only).
        cache: the corrupted-image cache; ``None`` opens the one named by the suite key
            ``cache_dir`` / ``$VITBENCH_CACHE`` / ``~/.cache/vitbench`` (``off`` disables it);
            ``False`` disables it. Noisy images come from it: every (noise, level, seed) of the
            run is built once, in parallel, the first time a cell needs one, then every method
            and keep ratio reads the same memory-mapped entry. When the cache cannot be written
            (read-only or full) the run warns once and corrupts in memory instead (same images).
        local_processes: processes of this run sharing this machine's cores (automatic thread
            choice); ``None``: ``$LOCAL_WORLD_SIZE``, else the accelerator's process count.

    Attributes:
        inputs: the :class:`~vitbench.harness.inputs.CellInputs` of the run (dataset, clean and
            noisy images, the corrupted-image cache).
        costs: the :class:`~vitbench.harness.costs.CellCosts` of the run (GMACs, params, tokens,
            throughput per setting).
        pruned: the :class:`~vitbench.harness.pruned.PrunedModels` provider of channel cells
            (prunes once per calibration setting, keeps the last pruned model in memory).
        trained: the :class:`~vitbench.harness.trained.TrainedParts` provider of trainable
            token cells (finds or trains their artifacts).
    """

    def __init__(
        self,
        suite: SuiteSpec,
        results: str,
        accelerator: Any = None,
        progress: bool = True,
        log: Callable[[str], None] = print,
        cache: CorruptionCache | Literal[False] | None = None,
        local_processes: int | None = None,
        reuse: bool = True,
    ) -> None:
        from accelerate import Accelerator

        self.suite = suite
        self.acc = accelerator or Accelerator(cpu=not torch.cuda.is_available())
        self.main = self.acc.is_main_process
        self.progress = progress and self.main
        self.log = log if self.main else (lambda _msg: None)
        #: the results store (main process): an existing one is opened, a new file is created by
        #: the first record, so a run refused during setup leaves no store behind
        self.store = PendingStore(results) if self.main else None
        self.acc.wait_for_everyone()
        self.results = results
        self._models: dict[ModelSpec, nn.Module] = {}
        self._digests: dict[ModelSpec, str] = {}
        self._labels: str | None = None
        #: the images of each cell (dataset, clean preparation, corrupted-image cache)
        self.inputs = CellInputs(
            suite,
            main=self.main,
            wait=self.acc.wait_for_everyone,
            processes=self.acc.num_processes,
            progress=self.progress,
            log=self.log,
            cache=cache,
        )
        #: GMACs, params, tokens and throughput of each cell, measured once per setting
        self.costs = CellCosts(suite.throughput, self.acc.device, lambda spec: self.threads_for(spec)[1])
        self._prov = provenance()
        #: keep-1.0 token cells take their accuracy from the dense record (:func:`dense_twin`)
        self.reuse = reuse
        self._hash = config_hash(suite.to_dict())
        self._threads: dict[ModelSpec, tuple[int, int]] = {}
        self._local = local_processes or local_processes_of(self.acc.num_processes)
        #: pruned models of channel cells and trained parts of trainable token cells
        self.pruned = PrunedModels(suite, self.acc, progress=self.progress, log=self.log)
        self.trained = TrainedParts(suite, self.acc, progress=self.progress, log=self.log)
        #: how each method contract's cells get their model (looked up along a method's MRO)
        self._builders: dict[type[Method], CellBuilder] = {
            TokenMethod: self._token_cell,
            ChannelMethod: self._channel_cell,
        }
        self._builder_of: dict[str, CellBuilder] = {}

    # -- inputs (delegated to CellInputs) ----------------------------------------------------
    def dataset(self) -> ImageSet | FileImageSet:
        """The suite's dataset split (:meth:`CellInputs.dataset`)."""
        return self.inputs.dataset()

    def images(self, cell: Cell, cfg: dict[str, Any]) -> np.ndarray:
        """The cell's images at the model's input size under its noise (:meth:`CellInputs.images`)."""
        return self.inputs.images(cell, cfg)

    def cache_key(self, cfg: dict[str, Any], noise: str, level: float, seed: int) -> CacheKey:
        """Corrupted-image cache key of this run's dataset (:meth:`CellInputs.cache_key`)."""
        return self.inputs.cache_key(cfg, noise, level, seed)

    @property
    def cache(self) -> CorruptionCache | Literal[False]:
        """The corrupted-image cache of the run (``False``: off, or disabled after a write failure)."""
        return self.inputs.cache

    def model(self, spec: ModelSpec) -> nn.Module:
        """The model of ``spec`` on the accelerator's device (created once, reused by every cell)."""
        if spec not in self._models:
            self._models.clear()  # one model in memory at a time
            model = model_from_spec(spec).to(self.acc.device).eval()
            check_classes(model, spec, self.suite.dataset.name, self.dataset().classes)
            self._models[spec] = model
        return self._models[spec]

    # -- what a cell measured: its identity -----------------------------------------------------
    def weights_digest(self, spec: ModelSpec) -> str:
        """Digest of the weights ``spec`` loads (:func:`vitbench.core.digests.weights_digest`).

        Hub weights are digested after the model is built (the file timm resolved, or the loaded
        state dict when no cache file can be named). Computed once per entry and run.

        Raises:
            VitbenchError: a weights file that cannot be read.
        """
        if spec not in self._digests:
            hub = spec.weights == "hub" or spec.name.startswith(HF_HUB_PREFIX)
            model = self.model(spec) if hub else None  # resolves (downloads) what timm loads
            digest = weights_digest(spec)
            if digest is None and model is not None:
                digest = state_digest(model.state_dict())
            self._digests[spec] = digest or "unknown"
        return self._digests[spec]

    def labels_digest(self) -> str:
        """Digest of which class (folder) got which label (``data.classes.dataset_class_digest``)."""
        if self._labels is None:
            self._labels = dataset_class_digest(self.dataset())
        return self._labels

    def content(self, cell: Cell) -> dict[str, Any]:
        """What a cell's numbers depend on beyond its spec: weights, method semantics, label order."""
        method = METHODS.get(cell.method.name)
        return {
            "weights_digest": self.weights_digest(cell.model),
            "method_version": int(method.version),
            "labels_digest": self.labels_digest(),
        }

    def cell_key(self, cell: Cell) -> str:
        """The store key of ``cell``: its spec and :meth:`content` (see :meth:`Cell.key`)."""
        return cell.key(self.content(cell))

    def todo(self, cells: list[Cell]) -> list[Cell]:
        """The cells of ``cells`` without a successful record under their current key."""
        done = self._done_keys()
        return [c for c in cells if self.cell_key(c) not in done]

    # -- one cell -----------------------------------------------------------------------------
    def evaluate(self, model: nn.Module, handle: Any, images: np.ndarray, cfg: dict[str, Any]) -> tuple:
        """Logits, labels and sample ids of the whole split, gathered across processes."""
        data = self.dataset()
        source: torch.utils.data.Dataset = (  # files: FileSamples from images(); arrays: in memory
            images
            if isinstance(images, torch.utils.data.Dataset)
            else ArraySamples(images, data.labels, data.sample_ids)
        )
        streamed = source is images
        loader = torch.utils.data.DataLoader(
            source,
            batch_size=self.suite.batch_size,
            shuffle=False,
            num_workers=default_workers() if streamed else 0,
            pin_memory=streamed and self.acc.device.type == "cuda",
        )
        loader = self.acc.prepare_data_loader(loader)
        outs: list[torch.Tensor] = []
        labels: list[torch.Tensor] = []
        ids: list[torch.Tensor] = []
        bar = _bar(loader, self.progress, "batches", leave=False, position=1)
        with torch.inference_mode():
            for raw, y, sid in bar:
                x = to_tensor(raw.numpy(), cfg).to(self.acc.device)
                handle.set_sample_ids(sid.to(self.acc.device))
                logits = model(x)
                g_logits, g_y, g_id = self.acc.gather_for_metrics(
                    (logits, y.to(logits.device), sid.to(logits.device))
                )
                outs.append(g_logits.float().cpu())
                labels.append(g_y.cpu())
                ids.append(g_id.cpu())
        order = torch.argsort(torch.cat(ids))
        return torch.cat(outs)[order], torch.cat(labels)[order], torch.cat(ids)[order]

    # -- how a cell gets its model --------------------------------------------------------------
    def builder(self, method: type[Method]) -> CellBuilder:
        """The :class:`CellBuilder` of ``method``'s contract (chosen once per method).

        Raises:
            VitbenchError: the method implements neither the token nor the channel contract.
        """
        if method.name not in self._builder_of:
            found = next((self._builders[c] for c in method.__mro__ if c in self._builders), None)
            if found is None:
                raise VitbenchError(
                    f"method '{method.name}' is neither a TokenMethod nor a ChannelMethod; "
                    "derive it from one of the contracts in vitbench.methods.base"
                )
            self._builder_of[method.name] = found
        return self._builder_of[method.name]

    def _token_cell(self, cell: Cell, method: type[Method], params: Any, dense: nn.Module) -> CellModel:
        """Token methods patch the shared model; trainable ones get their trained parts first."""
        cls = cast("type[TokenMethod]", method)
        if cls.trainable:  # look the artifact up by key; train it if the suite says so
            params = self.trained.params(cell, cast("type[TrainableMethod]", cls), params)
        return CellModel(dense, params, cls.apply(dense, params, cell.selection, cell.seed))

    def _channel_cell(self, cell: Cell, method: type[Method], params: Any, dense: nn.Module) -> CellModel:
        """Channel methods evaluate their pruned model under its token handle or the ``dense`` counter."""
        cls = cast("type[ChannelMethod]", method)
        model = self.pruned.model(cell, cls, params, dense, self.cache)
        apply = cls.token_handle(model, params, cell.seed)  # VTC-LFC: its token schedule
        counter = cast("type[TokenMethod]", METHODS.get("dense"))
        apply = apply or counter.apply(model, NoParams(), "scored", cell.seed)
        source = calibration_source(self.suite, cell)
        return CellModel(model, params, apply, cost_scope=(cell.calib_noise, cell.seed), fields=source)

    def run_cell(self, cell: Cell) -> CellResult:
        """Evaluate one cell: its measured record fields and per-sample outcome.

        The cell's model comes from the builder of its method's contract (:meth:`builder`):
        token methods patch the shared model (trainable ones with parts from :attr:`trained`);
        channel methods get their pruned model from :attr:`pruned` (pruned once per calibration
        setting, cached as an artifact, fine-tuned when asked) and run under their token handle
        or the ``dense`` token counter.
        """
        start = time.perf_counter()
        method: Any = METHODS.get(cell.method.name)
        dense = self.model(cell.model)
        method.check_model(dense, cell.model.name)
        params = method.params_for(cell.keep_ratio, dense, cell.method.overrides)
        built = self.builder(method)(cell, method, params, dense)
        model, params, apply = built.model, built.params, built.apply
        cfg = data_config(model)
        data = self.dataset()
        try:
            images = self.images(cell, cfg)
        except BaseException:
            apply.__exit__(None, None, None)  # the method patched the model already: undo it
            raise
        with apply as handle:
            logits, labels, ids = self.evaluate(model, handle, images, cfg)
            cost = self.costs.of(cell, model, handle, params, cfg, built.cost_scope)
        metrics = classification_metrics(logits, labels, n_bootstrap=self.suite.bootstrap, seed=cell.seed)
        fields = {
            "family": method.family,
            "params_json": dataclasses.asdict(params),
            "setting": method.setting(params),
            "n_samples": int(labels.numel()),
            "sample_ids_hash": data.ids_hash(),
            "data_config": {k: cfg[k] for k in DATA_CONFIG_KEYS if k in cfg},
            **metrics,
            **cost,
            **built.fields,
            "wall_s": time.perf_counter() - start,
        }
        return CellResult(fields, PerSample.from_logits(logits, labels, ids))

    def reused_cell(self, cell: Cell) -> CellResult | None:
        """A keep-1.0 token cell from its dense record (:func:`dense_twin`), or ``None`` to evaluate it.

        The accuracy fields (:data:`REUSED_FIELDS`) and per-sample outcome are the dense record's;
        GMACs, parameters and tokens per block are counted with the method applied, as for any
        cell; ``reused_from`` names the dense record. ``None`` when no successful dense record
        is stored (it was not part of the run, or failed).
        """
        twin = dense_twin(cell)
        if twin is None:
            return None
        key = self.cell_key(twin)
        found: Any = self.store.record(key) if self.store is not None else None
        samples = self.store.samples([key]).get(key) if found is not None and self.store is not None else None
        if self.acc.num_processes > 1:
            from accelerate.utils import broadcast_object_list

            box = [found is not None]
            broadcast_object_list(box, from_process=0)
            if not box[0]:
                return None
        elif found is None:
            return None
        start = time.perf_counter()
        method: Any = METHODS.get(cell.method.name)
        dense = self.model(cell.model)
        method.check_model(dense, cell.model.name)
        params = method.params_for(cell.keep_ratio, dense, cell.method.overrides)
        built = self.builder(method)(cell, method, params, dense)
        with built.apply as handle:
            cost = self.costs.of(cell, built.model, handle, built.params, data_config(built.model))
        fields = {
            "family": method.family,
            "params_json": dataclasses.asdict(built.params),
            "setting": method.setting(built.params),
            **({k: found[k] for k in REUSED_FIELDS} if found is not None else {}),
            **cost,
            "reused_from": key,
            "wall_s": time.perf_counter() - start,
        }
        return CellResult(fields, samples)

    def identity(self, cell: Cell) -> dict[str, Any]:
        """Record fields that identify the cell: its spec, its :meth:`content` and provenance."""
        return {
            "cell_key": self.cell_key(cell),
            **self.content(cell),
            "suite": self.suite.name,
            "model": cell.model.name,
            "weights": cell.model.weights,
            "model_args": dict(cell.model.model_args) or None,
            "model_label": cell.model.label,  # display only: not in the cell key
            "method": cell.method.name,
            "keep_ratio": cell.keep_ratio,
            "selection": cell.selection,
            "noise": cell.noise.name,
            "level": cell.noise.level,
            "calib_noise": cell.calib_noise.name,
            "calib_level": cell.calib_noise.level,
            "seed": cell.seed,
            "dataset": cell.dataset.name,
            "split": cell.dataset.split,
            "config_hash": self._hash,
            **self._prov,
        }

    # -- threads ------------------------------------------------------------------------------
    def threads_for(self, spec: ModelSpec) -> tuple[int, int]:
        """Intra-op threads ``(evaluation, throughput)`` for the cells of model ``spec``.

        Each is the suite's setting (``threads``, ``throughput.threads``) or else the rule of
        :func:`vitbench.core.threads.auto_threads`: one thread when the dense model's GMACs per image
        times the batch size (``batch_size``, ``throughput.batch_size``) is below
        ``SMALL_WORK_GMACS``, else the usable cores of this process. Chosen once per model and
        logged; recorded as ``eval_threads`` and ``threads``.
        """
        if spec not in self._threads:
            tp = self.suite.throughput
            cores = usable_cores(self._local)
            gmacs: list[float] = []  # the dense model's GMACs per image, counted when needed
            lines, chosen = [], []
            for what, fixed, batch, used in (
                ("evaluation", self.suite.threads, self.suite.batch_size, True),
                ("throughput", tp.threads, tp.batch_size, tp.enabled),
            ):
                if fixed is not None or not used:
                    n, why = fixed or 1, "set"
                else:
                    if not gmacs:
                        model = self.model(spec)
                        size = tuple(data_config(model)["input_size"])
                        gmacs.append(count_gmacs(model, size, device=str(self.acc.device)))
                    g = gmacs[0]
                    n, work = auto_threads(g, batch, cores), g * batch
                    sign = "<" if work < SMALL_WORK_GMACS else ">="
                    why = f"auto: {g:.3g} GMACs x batch {batch} = {work:.3g} {sign} {SMALL_WORK_GMACS:g}"
                chosen.append(n)
                if used:
                    lines.append(f"{what} on {n} thread(s) ({why})")
            self._threads[spec] = (chosen[0], chosen[1])
            self.log(f"{spec.name}: {'; '.join(lines)}; {cores} usable core(s)")
        return self._threads[spec]

    # -- the sweep ----------------------------------------------------------------------------
    def run(self, cells: list[Cell]) -> RunSummary:
        """Evaluate every cell not yet recorded; record failures and go on.

        Each cell runs with the evaluation threads of :meth:`threads_for` (recorded as
        ``eval_threads``) and measures throughput with its throughput threads (``threads``);
        the caller's torch setting is restored after each cell.
        """
        caller = torch.get_num_threads()
        try:
            summary = self._run(cells)
            if self.suite.throughput.enabled:  # after every cell: nothing else runs beside a timing
                self._throughput_phase(cells)
            if self.suite.throughput.runtimes:  # after every cell: exports never disturb accuracy cells
                run_runtime_phase(self, cells, resumed=summary.done == 0 and summary.skipped > 0)
            return summary
        finally:
            if torch.get_num_threads() != caller:
                torch.set_num_threads(caller)

    def _run(self, cells: list[Cell]) -> RunSummary:
        summary = RunSummary()
        self.dataset()  # fail fast on a bad dataset before any cell
        for spec in dict.fromkeys(c.model for c in cells):  # ... on a model that cannot be built
            check_model_spec(spec)
        todo = self.todo(cells)  # keyed by weights digest, method version and label order
        self.inputs.conditions = {
            (c.noise.name, c.noise.level, c.seed) for c in todo if c.noise.name != "clean"
        }
        summary.skipped = len(cells) - len(todo)
        if summary.skipped:
            self.log(f"resuming: {summary.skipped} of {len(cells)} cells already in {self.results}")
        # ... and on an unsupported model (registered architectures; own model_args: per cell)
        check_pairs(
            (c.model.name, c.method.name)
            for c in todo
            if not c.model.model_args and not c.model.name.startswith(HF_HUB_PREFIX)
        )
        if todo:
            self_check(self.acc.device)  # a counter this torch release breaks stops the run here
        reusing = [self.reuse and dense_twin(c) is not None for c in todo]  # cells may hold lists: no set
        order = [(c, False) for c, r in zip(todo, reusing) if not r] + [
            (c, True) for c, r in zip(todo, reusing) if r
        ]
        for cell, reused in _bar(order, self.progress, "cells", leave=True, position=0):
            record = self.identity(cell)
            samples = None
            try:
                record["eval_threads"] = threads = self.threads_for(cell.model)[0]
                with intra_op_threads(threads):
                    result = self.reused_cell(cell) if reused else None
                    result = result or self.run_cell(cell)
                record.update(result.fields)
                samples = result.samples
                summary.done += 1
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as exc:  # one failing cell must not stop the sweep
                line = " ".join(f"{type(exc).__name__}: {exc}".split())
                record["error"] = line
                summary.failed += 1
                summary.errors.append(f"{cell.label()}: {line}")
                self.log(f"cell failed ({cell.label()}): {line}")
            if self.store is not None:
                self.store.write(record, samples=samples)
        return summary

    def _throughput_phase(self, cells: list[Cell]) -> None:
        """Time every setting of ``cells`` whose records have no img/s yet, once, and fill them in.

        Runs after every cell is evaluated (a quiet machine for the timings); cells resumed from
        a run interrupted before its timings get them now. A setting that fails to time leaves its
        records without img/s and logs one line.
        """
        wanted: dict[tuple, list[str]] = {}
        first: dict[tuple, tuple[Cell, Any, Any]] = {}
        for cell in cells:
            key = self.cell_key(cell)
            found = self.store.record(key) if self.store is not None else None
            missing = found is not None and found.get("img_per_s") is None
            if self.acc.num_processes > 1:
                from accelerate.utils import broadcast_object_list

                box: list[Any] = [missing, found.get("params_json") if found else None]
                broadcast_object_list(box, from_process=0)
                missing, params_json = bool(box[0]), box[1]
            else:
                params_json = found.get("params_json") if found else None
            if not missing:
                continue
            method: Any = METHODS.get(cell.method.name)
            params = make_params(method, dict(params_json or {}))
            scope = (cell.calib_noise, cell.seed) if issubclass(method, ChannelMethod) else None
            setting = self.costs.key(cell, params, scope)
            wanted.setdefault(setting, []).append(key)
            first.setdefault(setting, (cell, method, params))
        for setting, keys in wanted.items():
            cell, method, params = first[setting]
            try:
                dense = self.model(cell.model)
                built = self.builder(method)(cell, method, params, dense)
                with built.apply as handle:
                    timed = self.costs.throughput_of(cell, built.model, handle, data_config(built.model))
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as exc:  # the records stay, without img/s
                self.log(f"throughput of {cell.label()} not measured: {' '.join(str(exc).split())}")
                continue
            if self.store is not None:
                for key in keys:
                    self.store.update(key, timed)

    def close(self) -> None:
        """Close the results store if it was opened (idempotent)."""
        if self.store is not None:
            self.store.close()

    def _done_keys(self) -> set[str]:
        """Keys of the successful records already in the store (read without creating it)."""
        keys = self.store.done_keys() if self.store is not None else set()
        from accelerate.utils import broadcast_object_list

        box = [sorted(keys)]
        if self.acc.num_processes > 1:
            broadcast_object_list(box, from_process=0)
        return set(box[0])


def _bar(items: Any, enabled: bool, desc: str, leave: bool, position: int) -> Iterator[Any]:
    if not enabled:
        return iter(items)
    from tqdm.auto import tqdm

    return iter(tqdm(items, desc=desc, leave=leave, position=position, dynamic_ncols=True))
