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
import json
import time
from collections.abc import Callable, Iterator
from typing import Any, Literal, Protocol, cast

import numpy as np
import torch
from torch import nn

from vitbench.core.errors import VitbenchError
from vitbench.core.models import (
    DATA_CONFIG_KEYS,
    HF_HUB_PREFIX,
    check_classes,
    check_model_spec,
    data_config,
    model_from_spec,
)
from vitbench.core.specs import Cell, ModelSpec, SuiteSpec
from vitbench.core.threads import SMALL_WORK_GMACS, auto_threads, intra_op_threads, usable_cores
from vitbench.core.threads import local_processes as local_processes_of
from vitbench.data import FileImageSet, ImageSet, default_workers, load_dataset
from vitbench.data.cache import CacheKey, CorruptionCache, content_hash, prep_rule, resolve_dir
from vitbench.data.cache import cache_key as corruption_key
from vitbench.data.files import skip_summary
from vitbench.data.noise import NOISES, apply_noise
from vitbench.data.prep import prepare_images, to_tensor
from vitbench.data.subsets import ArraySamples
from vitbench.harness.pruned import PrunedModels
from vitbench.harness.trained import TrainedParts
from vitbench.measure import (
    classification_metrics,
    count_gmacs,
    count_params_m,
    measure_throughput,
    self_check,
)
from vitbench.methods import METHODS
from vitbench.methods.base import ChannelMethod, Method, NoParams, TokenMethod
from vitbench.methods.requirements import check_pairs
from vitbench.methods.trainable import TrainableMethod
from vitbench.store.pending import PendingStore
from vitbench.store.per_sample import PerSample
from vitbench.store.results import config_hash, provenance

_PER_SAMPLE = "_per_sample"  # run_cell's per-sample outcome, written beside the record


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
    """

    model: nn.Module
    params: Any
    apply: Any
    cost_scope: tuple[Any, ...] | None = None


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
    ) -> None:
        from accelerate import Accelerator

        self.suite = suite
        self.acc = accelerator or Accelerator(cpu=not torch.cuda.is_available())
        self.main = self.acc.is_main_process
        self.progress = progress and self.main
        self.log = log if self.main else (lambda _msg: None)
        self.store = PendingStore(results) if self.main else None  # file created by the first record
        self.acc.wait_for_everyone()
        self.results = results
        self._models: dict[ModelSpec, nn.Module] = {}
        self._data: ImageSet | FileImageSet | None = None
        self._inputs: dict[tuple, np.ndarray] = {}
        self._clean: dict[tuple, np.ndarray] = {}
        if cache is None:
            root = resolve_dir(suite.cache_dir)
            cache = CorruptionCache(root, progress=self.progress, log=self.log) if root else False
        self.cache: CorruptionCache | Literal[False] = cache
        self._content_hash: str | None = None
        self._prebuilt: set[tuple] = set()
        self._conditions: set[tuple[str, float, int]] = set()
        self._cost: dict[tuple, dict[str, Any]] = {}
        self._prov = provenance()
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

    # -- inputs -------------------------------------------------------------------------------
    def dataset(self) -> ImageSet | FileImageSet:
        """The suite's dataset split (loaded once; folder datasets are decoded on demand)."""
        if self._data is None:
            d = self.suite.dataset
            self._data = load_dataset(
                d.name, root=d.root, split=d.split, limit=d.limit, class_order=d.class_order
            )
            if len(self._data) == 0:
                raise VitbenchError(
                    f"dataset '{d.name}' split '{d.split}' is empty; check its root and limit"
                )
            if isinstance(self._data, FileImageSet) and (line := skip_summary(self._data)):
                self.log(line)
        return self._data

    def model(self, spec: ModelSpec) -> nn.Module:
        """The model of ``spec`` on the accelerator's device (created once, reused by every cell)."""
        if spec not in self._models:
            self._models.clear()  # one model in memory at a time
            model = model_from_spec(spec).to(self.acc.device).eval()
            check_classes(model, spec, self.suite.dataset.name, self.dataset().classes)
            self._models[spec] = model
        return self._models[spec]

    def images(self, cell: Cell, cfg: dict[str, Any]) -> np.ndarray:
        """uint8 [N, h, w, 3] of the dataset at the model's input size with the cell's noise.

        Clean images are prepared in memory; noisy ones come from the corruption cache (a
        memory-mapped entry shared by every method of the sweep), or are corrupted in memory
        when the cache is off or cannot be written.
        """
        data = self.dataset()
        if isinstance(data, FileImageSet):  # decoded, resized and corrupted in DataLoader workers
            return data.samples(cfg, cell.noise.name, cell.noise.level, cell.seed)  # type: ignore[return-value]
        prep = (tuple(cfg["input_size"]), prep_rule(cfg))
        if prep not in self._clean:
            if len(self._clean) >= 2:
                self._clean.clear()
            self._clean[prep] = prepare_images(data.images, cfg)
        clean = self._clean[prep]
        noise = cell.noise
        if noise.name == "clean":
            return clean
        if self.cache is not False:
            if prep not in self._prebuilt:
                self._prebuilt.add(prep)
                self._prebuild(clean, cfg, cell)
            cached = self._from_cache(clean, cfg, noise.name, noise.level, cell.seed)
            if cached is not None:
                return cached
        key = (prep, noise, cell.seed)
        if key not in self._inputs:
            if len(self._inputs) > 8:
                self._inputs.clear()
            self._inputs[key] = apply_noise(clean, data.sample_ids, noise.name, noise.level, cell.seed)
        return self._inputs[key]

    def cache_key(self, cfg: dict[str, Any], noise: str, level: float, seed: int) -> CacheKey:
        """Cache key of this run's dataset at the input size of ``cfg`` under (noise, level, seed)."""
        data = self.dataset()
        if self._content_hash is None:
            self._content_hash = content_hash(data.images)
        return corruption_key(
            data.name, data.split, data.ids_hash(), self._content_hash, cfg, noise, level, seed
        )

    def _prebuild(self, clean: np.ndarray, cfg: dict[str, Any], cell: Cell) -> None:
        """Build every noisy (noise, level, seed) of this run for this input size, once, in parallel.

        Only the main process writes; the others wait and then read. Noises that cannot handle
        the image size are left out (their cells fail with the size error).
        """
        conditions = self._conditions or {(cell.noise.name, cell.noise.level, cell.seed)}
        h, w = clean.shape[1:3]
        keys = [
            self.cache_key(cfg, n, lv, sd)
            for n, lv, sd in sorted(conditions)
            if n != "clean" and min(h, w) >= NOISES.get(n).min_size
        ]
        try:
            if self.main and self.cache is not False and keys:
                stats = self.cache.build(clean, self.dataset().sample_ids, keys)
                if stats.built:
                    self.log(
                        f"cache: corrupted {stats.built} entries ({stats.images} images) in "
                        f"{stats.wall_s:.1f} s with {stats.workers} process(es), reused {stats.reused}"
                    )
        except Exception as exc:  # unwritable/full cache, or a noise failing in a worker
            self.log(f"warning: {_one_line(exc)}; corrupting images in memory instead")
            self.cache = False  # every process then corrupts (and fails, if it must) the same way
        finally:
            if self.acc.num_processes > 1:
                self.acc.wait_for_everyone()

    def _from_cache(
        self, clean: np.ndarray, cfg: dict[str, Any], noise: str, level: float, seed: int
    ) -> np.ndarray | None:
        """The cached entry, built now when missing (main process); ``None`` -> in memory."""
        if self.cache is False:
            return None
        key = self.cache_key(cfg, noise, level, seed)
        found = self.cache.lookup(key)
        if found is not None or not self.main:
            return found
        if min(clean.shape[1:3]) < NOISES.get(noise).min_size:
            return None  # the in-memory path raises the size error for this cell
        try:
            return self.cache.get(key, clean, self.dataset().sample_ids)
        except Exception as exc:  # as in _prebuild: the in-memory path gives the same images
            self.log(f"warning: {_one_line(exc)}; corrupting images in memory instead")
            self.cache = False
            return None

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

    def costs(
        self,
        cell: Cell,
        model: nn.Module,
        handle: Any,
        params: Any,
        cfg: dict[str, Any],
        scope: tuple[Any, ...] | None = None,
    ) -> dict[str, Any]:
        """GMACs (batch 1, real forward), params, tokens per block and throughput; cached per setting.

        ``scope``: what else the costs depend on (:attr:`CellModel.cost_scope`; a pruned model's
        calibration), part of the cache key.
        """
        key = (
            cell.model,
            cell.method.name,
            json.dumps(dataclasses.asdict(params), sort_keys=True),
            cell.selection,
            scope,
        )
        if key not in self._cost:
            input_size = tuple(cfg["input_size"])
            handle.set_sample_ids(None)
            gmacs = count_gmacs(model, input_size, device=str(self.acc.device))
            tokens = handle.tokens_per_block
            out: dict[str, Any] = {
                "gmacs": gmacs,
                "params_m": count_params_m(model),
                "tokens_per_block": tokens,
                "tokens_kept_frac": float(np.mean(tokens) / tokens[0]) if tokens and tokens[0] else None,
            }
            tp = self.suite.throughput
            if tp.enabled:
                with intra_op_threads(self.threads_for(cell.model)[1]):  # not the evaluation threads
                    res = measure_throughput(
                        model,
                        input_size,
                        tp.batch_size,
                        device=self.acc.device,
                        warmup=tp.warmup,
                        repeats=tp.repeats,
                    )
                out.update(
                    img_per_s=res.img_per_s,
                    ms_per_batch=res.ms_per_batch,
                    batch_size=res.batch_size,
                    throughput_dtype=res.dtype,
                    threads=res.threads,
                )
            self._cost[key] = out
        return self._cost[key]

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
        return CellModel(model, params, apply, cost_scope=(cell.calib_noise, cell.seed))

    def run_cell(self, cell: Cell) -> dict[str, Any]:
        """Evaluate one cell and return its record (without provenance).

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
            cost = self.costs(cell, model, handle, params, cfg, built.cost_scope)
        metrics = classification_metrics(logits, labels, n_bootstrap=self.suite.bootstrap, seed=cell.seed)
        return {
            "family": method.family,
            "params_json": dataclasses.asdict(params),
            "setting": method.setting(params),
            "n_samples": int(labels.numel()),
            "sample_ids_hash": data.ids_hash(),
            "data_config": {k: cfg[k] for k in DATA_CONFIG_KEYS if k in cfg},
            **metrics,
            **cost,
            "wall_s": time.perf_counter() - start,
            _PER_SAMPLE: PerSample.from_logits(logits, labels, ids),  # stored beside the record
        }

    def identity(self, cell: Cell) -> dict[str, Any]:
        """Record fields that identify the cell."""
        return {
            "cell_key": cell.key(),
            "suite": self.suite.name,
            "model": cell.model.name,
            "weights": cell.model.weights,
            "model_args": dict(cell.model.model_args) or None,
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
            return self._run(cells)
        finally:
            if torch.get_num_threads() != caller:
                torch.set_num_threads(caller)

    def _run(self, cells: list[Cell]) -> RunSummary:
        summary = RunSummary()
        done = self._done_keys()
        todo = [c for c in cells if c.key() not in done]
        self._conditions = {(c.noise.name, c.noise.level, c.seed) for c in todo if c.noise.name != "clean"}
        summary.skipped = len(cells) - len(todo)
        if summary.skipped:
            self.log(f"resuming: {summary.skipped} of {len(cells)} cells already in {self.results}")
        self.dataset()  # fail fast on a bad dataset before any cell
        for spec in dict.fromkeys(c.model for c in todo):  # ... on a model that cannot be built
            check_model_spec(spec)
        # ... and on an unsupported model (registered architectures; own model_args: per cell)
        check_pairs(
            (c.model.name, c.method.name)
            for c in todo
            if not c.model.model_args and not c.model.name.startswith(HF_HUB_PREFIX)
        )
        if todo:
            self_check(self.acc.device)  # a counter this torch release breaks stops the run here
        for cell in _bar(todo, self.progress, "cells", leave=True, position=0):
            record = self.identity(cell)
            try:
                record["eval_threads"] = threads = self.threads_for(cell.model)[0]
                with intra_op_threads(threads):
                    record.update(self.run_cell(cell))
                summary.done += 1
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as exc:  # one failing cell must not stop the sweep
                line = " ".join(f"{type(exc).__name__}: {exc}".split())
                record["error"] = line
                summary.failed += 1
                summary.errors.append(f"{cell.label()}: {line}")
                self.log(f"cell failed ({cell.label()}): {line}")
            samples = record.pop(_PER_SAMPLE, None)
            if self.store is not None:
                self.store.write(record, samples=samples)
        return summary

    def _done_keys(self) -> set[str]:
        keys = self.store.done_keys() if self.store is not None else set()
        from accelerate.utils import broadcast_object_list

        box = [sorted(keys)]
        if self.acc.num_processes > 1:
            broadcast_object_list(box, from_process=0)
        return set(box[0])


def _one_line(exc: BaseException) -> str:
    """A one-line message: a VitbenchError's own text, otherwise ``Type: message``."""
    text = str(exc) if isinstance(exc, VitbenchError) else f"{type(exc).__name__}: {exc}"
    return " ".join(text.split())


def _bar(items: Any, enabled: bool, desc: str, leave: bool, position: int) -> Iterator[Any]:
    if not enabled:
        return iter(items)
    from tqdm.auto import tqdm

    return iter(tqdm(items, desc=desc, leave=leave, position=position, dynamic_ncols=True))
