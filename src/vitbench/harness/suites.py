"""YAML suites -> :class:`SuiteSpec`; dotted overrides; validation with one-line errors; cells."""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from vitbench.core.checks import (
    check_data_config,
    check_fixed_setting,
    check_keep_ratio,
    check_runtimes,
    freeze_args,
)
from vitbench.core.errors import VitbenchError
from vitbench.core.method_index import MethodInfo, require_method
from vitbench.core.registry import close_hint
from vitbench.core.specs import (
    CalibSpec,
    Cell,
    DataSpec,
    MethodSpec,
    ModelSpec,
    NoiseSpec,
    SuiteSpec,
    ThroughputSpec,
    TrainSpec,
)
from vitbench.core.threads import check_threads
from vitbench.data import DATASETS
from vitbench.data.classes import check_class_order
from vitbench.data.noise import check_noise
from vitbench.train.config import coerce_options

SUITE_KEYS = {f.name for f in dataclasses.fields(SuiteSpec)}
DATA_KEYS = {f.name for f in dataclasses.fields(DataSpec)}
THROUGHPUT_KEYS = {f.name for f in dataclasses.fields(ThroughputSpec)}
CALIB_KEYS = {f.name for f in dataclasses.fields(CalibSpec)}


def _unknown(where: str, keys: Sequence[str], allowed: set[str]) -> None:
    for key in keys:
        if key not in allowed:
            close = difflib.get_close_matches(key, sorted(allowed), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise VitbenchError(f"unknown key '{key}' in {where}{hint} allowed: {', '.join(sorted(allowed))}")


def suites_dir() -> Path:
    """Folder of the suites shipped with vitbench (``vitbench/suites``)."""
    return Path(str(resources.files("vitbench") / "suites"))


def suite_names() -> list[str]:
    """Names of the suites shipped with vitbench (``vitbench/suites/*.yaml``)."""
    return sorted(p.stem for p in suites_dir().glob("*.yaml"))


def find_suite(name_or_path: str) -> Path:
    """Resolve a suite given as a path to a YAML file, or the name of a suite shipped with vitbench.

    Names are looked up in the package's data only (never in the current directory), so a
    user's own suite is used when, and only when, it is passed by path.

    Raises:
        VitbenchError: no such file or suite name (with close matches and the available names).
    """
    path = Path(name_or_path)
    if path.is_file():
        return path
    if path.parent != Path("."):
        raise VitbenchError(f"suite file {name_or_path} does not exist; check the path, or give a suite name")
    stem = path.name if path.suffix in (".yaml", ".yml") else f"{path.name}.yaml"
    shipped = suites_dir() / stem
    if shipped.is_file():
        return shipped
    names = suite_names()
    hint = close_hint(Path(stem).stem, names) or ";"
    raise VitbenchError(
        f"suite '{name_or_path}' not found{hint} available: {', '.join(names)}, or a YAML path"
    )


def default_split(dataset: str) -> str:
    """Evaluation split of ``dataset`` when none is given: ``test``, else ``val``, else its first split.

    Datasets that accept any split (``image-folder``, ``synthetic``) get :class:`DataSpec`'s
    default (``test``).
    """
    splits = tuple(DATASETS.info(dataset).get("splits", ()))
    for split in (DataSpec.split, "val"):
        if not splits or split in splits:
            return split
    return splits[0]


def load_suite(name_or_path: str, overrides: Mapping[str, Any] | None = None) -> SuiteSpec:
    """Read and validate a suite YAML, then apply dotted ``overrides`` (e.g. ``dataset.limit``)."""
    path = find_suite(name_or_path)
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise VitbenchError(
            f"{path}{where}: malformed YAML ({getattr(exc, 'problem', exc)}); fix the syntax"
        ) from None
    if not isinstance(raw, dict):
        raise VitbenchError(
            f"{path}: a suite must be a YAML mapping with keys like models, methods, keep_ratios"
        )
    raw.setdefault("name", path.stem)
    for key, value in (overrides or {}).items():
        _set_dotted(raw, key, value)
    return suite_from_dict(raw, where=str(path))


def _set_dotted(raw: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    _unknown("--set", [parts[0]], SUITE_KEYS)
    node = raw
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise VitbenchError(f"--set {key}: '{part}' is not a mapping in this suite")
    node[parts[-1]] = yaml.safe_load(value) if isinstance(value, str) else value


#: Longest suite name: it names files (``<suite>.sqlite``) and folders (``<results>/<suite>/``).
SUITE_NAME_MAX = 100
_SUITE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")


def check_suite_name(name: object, where: str) -> str:
    """A suite name that is safe as one file or folder name, as a string.

    Allowed: letters, digits and ``. _ + -``, starting with a letter or digit, at most
    :data:`SUITE_NAME_MAX` characters, no ``..``; so no path separator, no hidden file and no
    name a file system refuses.

    Raises:
        VitbenchError: any other name (one line, before any file is written).
    """
    text = str(name)
    if len(text) > SUITE_NAME_MAX:
        raise VitbenchError(
            f"{where}: suite name of {len(text)} characters is too long (at most {SUITE_NAME_MAX}); "
            "set a shorter name: in the suite"
        )
    if not _SUITE_NAME.fullmatch(text) or ".." in text:
        raise VitbenchError(
            f"{where}: suite name {text!r} is not a safe file name; use letters, digits and . _ + - "
            "(no '/', no '..', not starting with '.'), e.g. name: my-suite"
        )
    return text


def suite_from_dict(raw: Mapping[str, Any], where: str = "suite") -> SuiteSpec:
    """Validate a plain mapping and build a :class:`SuiteSpec`."""
    _unknown(where, list(raw), SUITE_KEYS)
    check_suite_name(raw.get("name", ""), where)
    for required in ("models", "methods"):
        if not raw.get(required):
            raise VitbenchError(f"{where}: '{required}' is missing or empty; list at least one")
    try:
        spec = SuiteSpec(
            name=str(raw["name"]),
            models=tuple(_model(m, where) for m in _as_list(raw["models"])),
            methods=tuple(_method(m, where) for m in _as_list(raw["methods"])),
            dataset=_dataset(raw.get("dataset", {}), where),
            keep_ratios=tuple(parse_keep_ratio(k, where) for k in _as_list(raw.get("keep_ratios", [1.0]))),
            noises=tuple(n for item in _as_list(raw.get("noises", ["clean"])) for n in _noises(item, where)),
            selections=tuple(_selection(s, where) for s in _as_list(raw.get("selections", ["scored"]))),
            seeds=tuple(int(s) for s in _as_list(raw.get("seeds", [0]))),
            calib_noise=_calib_noises(raw.get("calib_noise", "clean"), where)[0],
            calib_noises=_calib_noises(raw.get("calib_noise", "clean"), where),
            calib=_calib(raw.get("calib", {}), where),
            batch_size=_positive_int(raw.get("batch_size", 128), "batch_size", where),
            bootstrap=_positive_int(raw.get("bootstrap", 1000), "bootstrap", where),
            throughput=_throughput(raw.get("throughput", {}), where),
            cache_dir=_cache_dir(raw.get("cache_dir"), where),
            train=_train(raw.get("train"), where),
            threads=check_threads(
                raw.get("threads"), f"{where}: threads", "set threads: 1 (or N >= 1), or leave it out"
            ),
        )
    except (TypeError, ValueError) as exc:
        raise VitbenchError(f"{where}: {exc}") from None
    if spec.train is not None:
        _check_train_split(spec.train_data(), where)
    check_keep_axis(spec, where, full=False)  # a given knob: refused before torch is imported
    _check_models_and_params(spec, where)
    return spec


def method_keeps(suite: SuiteSpec, method: MethodSpec, info: MethodInfo) -> tuple[float, ...]:
    """The keep ratios ``method`` runs at: its own, else the suite's; 1.0 for a method without a knob."""
    return (method.keep_ratios or suite.keep_ratios) if info.knob else (1.0,)


def check_keep_axis(suite: SuiteSpec, where: str, full: bool = True) -> None:
    """Refuse a method whose given parameters fix its setting while it runs at several keep ratios.

    Args:
        suite: the suite.
        where: what gave it, for the message.
        full: also the parameters that replace a method's knob (``Method.replaces_knob``, read
            from the method classes, which imports torch); ``False``: only a given knob, read from
            the method index (no torch).

    Raises:
        VitbenchError: one line naming the method, the parameters, the keep ratios and the fix
            (:func:`vitbench.core.checks.check_fixed_setting`).
    """
    fixed_by = None
    if full:
        # the method classes import torch and timm; the check without them runs first (deferred)
        from vitbench.methods import METHODS

        fixed_by = METHODS.get
    for method in suite.methods:
        info = require_method(method.name)
        params = method.overrides
        if fixed_by is not None:
            fixed = fixed_by(method.name).fixed_by(params)
        else:
            fixed = info.given_knob(params)
        check_fixed_setting(method.name, info.knob, fixed, method_keeps(suite, method, info), where)


def _check_models_and_params(spec: SuiteSpec, where: str) -> None:
    """The checks that need timm and the method classes, after every check that needs neither.

    Raises:
        VitbenchError: a model name timm does not know (close matches named), or method parameters
            with an unknown name or a wrong type.
    """
    # timm and the method modules import torch (seconds): a suite with a mistake found above is
    # refused without them (deferred)
    from vitbench.core.models import check_model_name
    from vitbench.methods import METHODS
    from vitbench.methods.base import make_params

    for model in spec.models:
        check_model_name(model.name)
    for method in spec.methods:
        cls = METHODS.get(method.name)
        try:  # validates names and types now, not mid-sweep
            make_params(cls, {**cls.defaults(), **dict(method.params)})
        except (TypeError, ValueError) as exc:
            raise VitbenchError(f"{where}: {exc}") from None


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _positive_int(value: Any, key: str, where: str) -> int:
    if not isinstance(value, int) or value < 1:
        raise VitbenchError(f"{where}: {key} must be a positive integer, got {value!r}")
    return value


def _model(item: Any, where: str) -> ModelSpec:

    if isinstance(item, str):
        item = {"name": item}
    if not isinstance(item, dict) or "name" not in item:
        raise VitbenchError(f"{where} models: each entry needs a name, e.g. {{name: vit_tiny_patch16_224}}")
    _unknown(f"{where} models", list(item), {"name", "weights", "model_args", "data_config", "label"})
    name = str(item["name"])
    label = item.get("label")
    if label is not None and (not isinstance(label, str) or not label.strip()):
        raise VitbenchError(
            f"{where} model '{name}' label must be a non-empty text such as label: \"ViT-T/4 CIFAR-10\", "
            f"got {label!r}"
        )
    model_args = _mapping(item.get("model_args"), f"{where} model '{name}' model_args")
    data_config = _mapping(item.get("data_config"), f"{where} model '{name}' data_config")
    check_data_config(data_config, model_args, f"{where} model '{name}'")
    return ModelSpec(
        name,
        str(item.get("weights", "random")),
        freeze_args(model_args),
        freeze_args(data_config),
        label=label.strip() if label else None,
    )


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise VitbenchError(f"{where} must be a mapping of names to values, got {value!r}")
    return dict(value)


def _method(item: Any, where: str) -> MethodSpec:

    if isinstance(item, str):
        item = {"name": item}
    _unknown(f"{where} methods", list(item), {"name", "params", "keep_ratios"})
    info = require_method(str(item["name"]))
    params = item.get("params") or {}
    if not isinstance(params, dict) or not all(isinstance(k, str) for k in params):
        raise VitbenchError(
            f"{where}: methods '{info.name}' params must be a mapping of names to values, got {params!r}"
        )
    unknown = [k for k in params if info.param_names and k not in info.param_names]
    if unknown:  # the types are checked with the method class, after the checks without torch
        raise VitbenchError(
            f"{where}: method '{info.name}' has no parameter '{unknown[0]}'"
            f"{close_hint(unknown[0], info.param_names)} its parameters are: {', '.join(info.param_names)}"
        )
    keeps = item.get("keep_ratios")
    if keeps is not None:
        keeps = tuple(parse_keep_ratio(k, where) for k in _as_list(keeps))
        if not keeps:
            raise VitbenchError(f"{where}: methods '{info.name}' keep_ratios is empty; list at least one")
    return MethodSpec(info.name, tuple(sorted(params.items())), keeps)


def _dataset(item: Any, where: str) -> DataSpec:

    if isinstance(item, str):
        item = {"name": item}
    _unknown(f"{where} dataset", list(item), DATA_KEYS)
    DATASETS.get(str(item.get("name", DataSpec.name)))
    if "split" not in item:  # the dataset's evaluation split (imagenet: val, mnist-demo: test)
        item = {**item, "split": default_split(str(item.get("name", DataSpec.name)))}
    spec = DataSpec(**item)
    spec = dataclasses.replace(spec, class_order=check_class_order(spec.class_order, f"{where} dataset"))
    if spec.limit is not None and (not isinstance(spec.limit, int) or spec.limit < 1):
        raise VitbenchError(f"{where}: dataset.limit must be a positive integer or null, got {spec.limit!r}")
    return spec


def parse_keep_ratio(value: Any, where: str) -> float:
    """A keep ratio from a suite or the command line as a float in ``(0, 1]``.

    Args:
        value: the given value (a number, or a string of one).
        where: what gave it, for the message (``suite.yaml: methods[0]``, ``--keep``).

    Raises:
        VitbenchError: not a number, or outside ``(0, 1]``.
    """
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise VitbenchError(f"{where}: keep ratio {value!r} is not a number; use values in (0, 1]") from None
    try:
        check_keep_ratio(number)
    except VitbenchError as exc:
        raise VitbenchError(f"{where}: {exc}") from None
    return number


def _selection(value: Any, where: str) -> str:
    if value not in ("scored", "random"):
        hint = close_hint(str(value), ("scored", "random"))
        raise VitbenchError(f"{where}: selection {value!r} is not 'scored' or 'random'{hint}")
    return str(value)


def _noises(item: Any, where: str) -> list[NoiseSpec]:

    if isinstance(item, str):
        item = {"name": item}
    _unknown(f"{where} noises", list(item), {"name", "levels"})
    name = str(item["name"])
    if name == "clean":
        return [NoiseSpec()]
    levels = _as_list(item.get("levels", [1, 2, 3, 4, 5]))
    out = []
    for level in levels:
        check_noise(name, level)
        out.append(NoiseSpec(name, float(level)))
    return out


def _calib_noises(item: Any, where: str) -> tuple[NoiseSpec, ...]:
    """``calib_noise``: one noise (``{name, level}``), or a list of noises with levels (an axis)."""
    if not isinstance(item, list):
        return (_single_noise(item, where),)
    out: list[NoiseSpec] = []
    for entry in item:
        if isinstance(entry, dict) and "level" in entry:
            out.append(_single_noise(entry, where))
        else:
            out.extend(_noises(entry, where))
    if not out:
        raise VitbenchError(f"{where}: calib_noise is an empty list; give at least one noise (e.g. clean)")
    return tuple(dict.fromkeys(out))


def _single_noise(item: Any, where: str) -> NoiseSpec:
    if isinstance(item, str):
        item = {"name": item, "levels": [1]} if item != "clean" else {"name": "clean"}
    if isinstance(item, dict) and "level" in item:
        item = {"name": item["name"], "levels": [item["level"]]}
    noises = _noises(item, where)
    if len(noises) != 1:
        raise VitbenchError(f"{where}: calib_noise takes one noise and one level")
    return noises[0]


def _cache_dir(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise VitbenchError(f"{where}: cache_dir must be a folder path or 'off', got {value!r}")
    return value


def _throughput(item: Any, where: str) -> ThroughputSpec:
    if item is False:
        return ThroughputSpec(enabled=False)
    if not isinstance(item, dict):
        raise VitbenchError(f"{where}: throughput must be a mapping or false")
    _unknown(f"{where} throughput", list(item), THROUGHPUT_KEYS)
    fix = "set throughput.threads: 1 (or N >= 1), or leave it out"
    threads = check_threads(item.get("threads"), f"{where}: throughput.threads", fix)
    runtimes, sizes = _runtime_axis(item, where)
    return ThroughputSpec(**{**item, "threads": threads, "runtimes": runtimes, "batch_sizes": sizes})


def _runtime_axis(item: dict, where: str) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """``throughput.runtimes`` / ``batch_sizes`` validated (packages checked: the deploy extra)."""
    runtimes = item.get("runtimes") or []
    if isinstance(runtimes, str) or not isinstance(runtimes, list):
        raise VitbenchError(f"{where}: throughput.runtimes must be a list such as [eager, onnxruntime]")
    sizes = item.get("batch_sizes")
    if sizes is None:
        sizes = [1, int(item.get("batch_size", ThroughputSpec.batch_size))] if runtimes else []
    if not isinstance(sizes, list) or not all(isinstance(b, int) and b >= 1 for b in sizes):
        raise VitbenchError(f"{where}: throughput.batch_sizes must be a list of integers >= 1, e.g. [1, 64]")
    try:
        names = check_runtimes([str(r) for r in runtimes])
    except VitbenchError as exc:
        raise VitbenchError(f"{where}: {exc}") from None
    return names, tuple(dict.fromkeys(sizes))


def _calib(item: Any, where: str) -> CalibSpec:
    """``calib:`` -> :class:`CalibSpec` (images and batch of channel methods' calibration)."""
    if not isinstance(item, dict):
        raise VitbenchError(f"{where}: calib must be a mapping such as {{n_images: 256, batch_size: 64}}")
    _unknown(f"{where} calib", list(item), CALIB_KEYS)
    out = {k: _positive_int(v, f"calib.{k}", where) for k, v in item.items() if k != "split"}
    return CalibSpec(**out, split=str(item.get("split", "train")))


def _train(item: Any, where: str) -> TrainSpec | None:
    """``train:`` -> :class:`TrainSpec`: ``true``/``{}`` for defaults, options, optional ``dataset``."""
    if item is None or item is False:
        return None
    if item is True:
        item = {}
    if not isinstance(item, dict):
        raise VitbenchError(
            f"{where}: train must be a mapping of training options (e.g. {{epochs: 3}}) or true"
        )

    options = dict(item)
    data = options.pop("dataset", None)
    dataset = None
    if data is not None:
        dataset = _dataset(data, f"{where} train")
        if not isinstance(data, dict) or "split" not in data:
            dataset = dataclasses.replace(dataset, split="train")
    return TrainSpec(dataset, tuple(sorted(coerce_options(options, f"{where} train").items())))


def _check_train_split(data: DataSpec, where: str) -> None:

    splits = tuple(DATASETS.info(data.name).get("splits", ()))
    if splits and data.split not in splits:
        raise VitbenchError(
            f"{where}: training needs data, but dataset '{data.name}' has no split '{data.split}' "
            f"(splits: {', '.join(splits)}); set train.dataset"
        )


def expand(suite: SuiteSpec) -> list[Cell]:
    """All cells of a suite, in a stable order (model, method, keep, selection, noise, seed).

    Methods without a keep-ratio knob (``dense``) run once at keep 1.0, a method with its own
    ``keep_ratios`` runs at those instead of the suite's; each method runs only the selection
    modes it supports (``random-tokens`` is random by construction).

    Raises:
        VitbenchError: a method whose given parameters fix its setting runs at several keep
            ratios (:func:`check_keep_axis`): the cells would repeat one evaluation.
    """
    check_keep_axis(suite, f"suite '{suite.name}'")
    cells: list[Cell] = []
    for model in suite.models:
        for method in suite.methods:
            info = require_method(method.name)
            keeps = method_keeps(suite, method, info)
            sels = [s for s in suite.selections if s in info.selections] or [info.selections[0]]
            # only channel methods read calibration images: the others run at the first calib noise
            calibs = suite.calib_noises or (suite.calib_noise,)
            calibs = calibs if not info.token else calibs[:1]
            for keep in keeps:
                for sel in sels:
                    for calib in calibs:
                        for noise in suite.noises:
                            for seed in suite.seeds:
                                cell = Cell(model, method, keep, noise, sel, seed, suite.dataset, calib)
                                cells.append(cell)
    return cells
