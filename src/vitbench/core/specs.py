"""Frozen, typed specs: what to run. Built from YAML by :mod:`vitbench.harness.suites`."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from typing import Any


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A timm model and where its weights come from (``random``, ``demo``, ``hub`` or a file path).

    Attributes:
        name: timm model name (pretrained tag allowed) or an ``hf-hub:`` id.
        weights: ``random``, ``demo``, ``hub`` or a path to ``.pth``/``.pt``/``.safetensors``.
        model_args: keyword arguments of ``timm.create_model`` as sorted (name, value) pairs
            (lists frozen to tuples), e.g. ``(("img_size", 32), ("patch_size", 4))``.
        data_config: overrides of the model's pretrained data config as sorted (name, value)
            pairs; keys among ``input_size``, ``mean``, ``std``, ``interpolation``, ``crop_pct``,
            ``crop_mode``.
        label: how tables and figures name the entry (the suite's ``label:``); display only: it
            is part of neither :meth:`ident`, cell keys, config hashes nor equality, so
            relabelling an entry reuses its records.
    """

    name: str
    weights: str = "random"
    model_args: tuple[tuple[str, Any], ...] = ()
    data_config: tuple[tuple[str, Any], ...] = ()
    label: str | None = dataclasses.field(default=None, compare=False)

    def ident(self) -> dict[str, Any]:
        """Plain-data identity of the entry.

        ``model_args``/``data_config`` appear only when given, so a plain model keeps the cell
        keys and config hashes it had before these fields existed.
        """
        d: dict[str, Any] = {"name": self.name, "weights": self.weights}
        if self.model_args:
            d["model_args"] = [list(kv) for kv in self.model_args]
        if self.data_config:
            d["data_config"] = [list(kv) for kv in self.data_config]
        return d


@dataclasses.dataclass(frozen=True)
class MethodSpec:
    """A registered method with native-parameter overrides (sorted key/value pairs).

    ``keep_ratios`` (optional) replaces the suite's keep ratios for this method only, e.g. a
    trained method whose artifacts exist at a few ratios; it is not part of a cell's identity.
    """

    name: str
    params: tuple[tuple[str, Any], ...] = ()
    keep_ratios: tuple[float, ...] | None = None

    @property
    def overrides(self) -> dict[str, Any]:
        """Overrides as a dict."""
        return dict(self.params)


@dataclasses.dataclass(frozen=True)
class DataSpec:
    """A registered dataset adapter, its root (if it needs one), split and sample limit.

    ``class_order``: which class folder gets which label in folder datasets (``natural``,
    ``lexicographic`` or a file of class names; ``None`` = natural). It is left out of
    :meth:`Cell.key`: the labelling it gives is keyed by the digest of the class list.
    """

    name: str = "mnist-demo"
    split: str = "test"
    root: str | None = None
    limit: int | None = None
    class_order: str | None = None


@dataclasses.dataclass(frozen=True)
class NoiseSpec:
    """A noise and one level (``clean`` has level 0)."""

    name: str = "clean"
    level: float = 0.0


@dataclasses.dataclass(frozen=True)
class ThroughputSpec:
    """Throughput measurement settings; ``enabled=False`` skips it.

    ``threads``: intra-op CPU threads of the measurement (recorded as ``threads``); ``None``
    applies :func:`vitbench.core.threads.auto_threads` to ``batch_size`` (kept apart from the
    evaluation threads, ``SuiteSpec.threads``).

    ``runtimes`` / ``batch_sizes``: the runtime phase (:mod:`vitbench.harness.runtime_phase`), run
    after every cell is evaluated: each setting timed in each runtime (``eager``, ``compile``,
    ``onnxruntime``, ``openvino``) at each batch size, equality with eager checked first; empty:
    no runtime phase. Not part of a cell's or suite's identity (speed only).
    """

    enabled: bool = True
    batch_size: int = 64
    warmup: int = 2
    repeats: int = 5
    threads: int | None = None
    runtimes: tuple[str, ...] = ()
    batch_sizes: tuple[int, ...] = ()


@dataclasses.dataclass(frozen=True)
class CalibSpec:
    """Calibration data of channel methods (its ``calib:`` key).

    Attributes:
        n_images: images drawn (seeded by the cell's seed) from the dataset's ``split``.
        batch_size: images per calibration batch.
        split: split the images come from (``train``: never the evaluation split).
    """

    n_images: int = 256
    batch_size: int = 64
    split: str = "train"


@dataclasses.dataclass(frozen=True)
class TrainSpec:
    """How a suite trains missing artifacts of trainable methods (its ``train:`` key).

    Attributes:
        dataset: training data; ``None`` = the suite's dataset with split ``train``.
        options: ``vitbench.train.finetune.TrainConfig`` hyper-parameters as sorted (name, value) pairs.
    """

    dataset: DataSpec | None = None
    options: tuple[tuple[str, Any], ...] = ()


@dataclasses.dataclass(frozen=True)
class SuiteSpec:
    """A sweep: models x methods x keep ratios x noises x selections x seeds on one dataset."""

    name: str
    models: tuple[ModelSpec, ...]
    methods: tuple[MethodSpec, ...]
    dataset: DataSpec = DataSpec()
    keep_ratios: tuple[float, ...] = (1.0,)
    noises: tuple[NoiseSpec, ...] = (NoiseSpec(),)
    selections: tuple[str, ...] = ("scored",)
    seeds: tuple[int, ...] = (0,)
    calib_noise: NoiseSpec = NoiseSpec()
    calib: CalibSpec = CalibSpec()  # calibration images of channel methods (noise: calib_noise)
    # calibration-noise axis (noisy-calibration study): channel methods run once per entry;
    # empty = just ``calib_noise``. ``calib_noise`` is its first entry.
    calib_noises: tuple[NoiseSpec, ...] = ()
    batch_size: int = 128
    bootstrap: int = 1000
    throughput: ThroughputSpec = ThroughputSpec()
    cache_dir: str | None = None  # corrupted-image cache; None: $VITBENCH_CACHE or ~/.cache/vitbench
    train: TrainSpec | None = None  # lets the harness train missing artifacts of trainable methods
    # intra-op CPU threads of evaluation; None: vitbench.core.threads.auto_threads (not a result)
    threads: int | None = None

    def train_data(self) -> DataSpec:
        """Data that trainable methods' artifacts are (or would be) trained on."""
        if self.train is not None and self.train.dataset is not None:
            return self.train.dataset
        return DataSpec(
            name=self.dataset.name,
            split="train",
            root=self.dataset.root,
            class_order=self.dataset.class_order,
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (for hashing and provenance).

        ``cache_dir`` and the thread counts are left out: neither changes a result (threads change
        only wall times and throughput, and each record holds its thread counts).
        """
        d = dataclasses.asdict(self)
        d.pop("cache_dir", None)
        d["models"] = [m.ident() for m in self.models]
        d.pop("threads", None)
        d["throughput"].pop("threads", None)
        d["throughput"].pop("runtimes", None)  # speed only: the runtime phase changes no record
        d["throughput"].pop("batch_sizes", None)
        if d["dataset"]["class_order"] is None:  # as before the key existed
            d["dataset"].pop("class_order")
        return d


@dataclasses.dataclass(frozen=True)
class Cell:
    """One evaluation: the unit of resume and of error capture."""

    model: ModelSpec
    method: MethodSpec
    keep_ratio: float
    noise: NoiseSpec
    selection: str
    seed: int
    dataset: DataSpec
    calib_noise: NoiseSpec = NoiseSpec()

    def key(self, content: Mapping[str, Any] | None = None) -> str:
        """Stable unique key (sha256 of the cell's identity, 24 hex chars).

        Args:
            content: what the cell's numbers depend on beyond its spec -- the digest of the weights
                it loads, its method's semantics version and its dataset's label order (see
                :meth:`vitbench.harness.runner.Harness.content`). The harness always passes it,
                so a changed checkpoint under the same file name, a new method version or another
                label order gets a new key and is evaluated again. ``None``: the spec alone (the
                key of stores written before content was keyed).
        """
        ident = dataclasses.asdict(self)
        ident["method"].pop("keep_ratios", None)  # the keep ratio itself is in the key
        ident["model"] = self.model.ident()
        ident["dataset"].pop("class_order", None)  # the class list's digest keys the labelling
        if content is not None:
            ident["content"] = dict(content)
        blob = json.dumps(ident, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:24]

    def label(self) -> str:
        """Short human-readable description for progress bars and error lines."""
        extra = f" {dict(self.method.params)}" if self.method.params else ""
        noise = "clean" if self.noise.name == "clean" else f"{self.noise.name}@{self.noise.level:g}"
        keep = f"keep={self.keep_ratio:g}"
        return f"{self.model.name} {self.method.name}{extra} {keep} {noise} {self.selection} s{self.seed}"
