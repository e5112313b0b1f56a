"""Method contracts: token methods patch a model reversibly, channel methods return a new model.

Every method is a class registered in :data:`METHODS` with a frozen ``Params`` dataclass holding
its native knobs. The harness axis ``keep_ratio`` is translated into native parameters by
``params_for``; values given with ``--set name=value`` override the translation. What a method
needs from a model (class token, timm ViT blocks, ...) is its ``requirements``
(:class:`~vitbench.methods.requirements.Requirements`); ``supported`` derives from it and
``params_for`` refuses an unsupported model with one line.
"""

from __future__ import annotations

import dataclasses
from abc import abstractmethod
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, Literal, TypeVar, cast

import torch
from torch import nn

from vitbench.core import registry
from vitbench.core.checks import check_keep_ratio as check_keep_ratio  # re-exported (torch-free)
from vitbench.core.errors import VitbenchError
from vitbench.core.registry import Registry
from vitbench.methods.requirements import Requirements, UnsupportedModelError, unsupported_line

#: All compression methods (token and channel). Plugins: entry-point group ``vitbench.methods``.
METHODS = cast("Registry[type[Method]]", registry.METHODS)

M = TypeVar("M", bound="type[Method]")

Selection = Literal["scored", "random"]
SELECTIONS: tuple[str, ...] = ("scored", "random")


@dataclasses.dataclass(frozen=True)
class Conformance:
    """What the conformance kit (:mod:`vitbench.testing`) should expect of a method.

    A method states its properties here instead of being special-cased by the checks.

    Attributes:
        reduces: the method's low keep ratios reduce tokens (token methods) or channels (channel
            methods); ``False`` for the ``dense`` reference.
        changes_attention: the method changes attention itself (ToMe's proportional attention
            adds log token sizes to the logits), so prefix tokens equal the unpatched block's
            output only up to the first block that reduces tokens; their merge sizes must stay 1.
        fuses_in_attention: the method reduces tokens inside a block's attention (MCTF's
            one-step-ahead attention fuses keys, queries and values before ``attention v``), so
            even the first reducing block's prefix outputs differ from the unpatched block's;
            prefix tokens are compared only in the blocks before it.
        gmacs_overhead: MACs the method adds beyond the transformer blocks it schedules (scores,
            predictors, matching, squeezing), at most this fraction of the dense model's GMACs on the
            kit's tiny models.
        fast: ``Params`` overrides that keep the kit fast on tiny random models (fewer samples or
            steps) without changing what is checked; the keep ratio's own settings win.
        models: keys of :data:`vitbench.testing.models.TINY_MODELS` to run on (empty: the kit's
            default set for the family; models the method does not support are left out).
        expected_failures: ``(check, reason)`` pairs: checks known to fail for this method; the
            kit marks them strictly expected to fail (a pass is reported as an error).
        card: path of the method card YAML relative to the module defining the method (plugins);
            empty: the card shipped with vitbench (``vitbench/cards/methods/<name>.yaml``).
        slow: the checks that run the method take minutes on a CPU; the kit marks them
            ``slow`` (deselected by ``-m "not slow"``; the card and refusal checks stay fast).
        adaptive: the tokens per block vary per image (ATS): ``schedule`` is an upper bound and
            the handle reports per-image counts and block MACs (``Handle.image_costs``).
    """

    reduces: bool = True
    changes_attention: bool = False
    fuses_in_attention: bool = False
    gmacs_overhead: float = 0.0
    fast: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    models: tuple[str, ...] = ()
    expected_failures: tuple[tuple[str, str], ...] = ()
    card: str = ""
    slow: bool = False
    adaptive: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.gmacs_overhead < 1.0:
            raise ValueError(f"gmacs_overhead {self.gmacs_overhead} is outside [0, 1); give a fraction")


@dataclasses.dataclass(frozen=True)
class NoParams:
    """Native parameters of a method without knobs."""


class Method:
    """Common part of both contracts.

    Register a subclass with the decorator :func:`register` (it reads ``name`` and ``family``).

    Class attributes:
        name: registry key (stated once: the registration and the card use it).
        family: ``"token"`` or ``"channel"`` (``"baseline"`` methods declare the family they stand in).
        Params: frozen dataclass of native parameters with defaults.
        selections: selection modes the method supports (``scored`` = its own criterion,
            ``random`` = same counts and same merge/fuse step with seeded uniform scores).
        knob: name of the native knob the keep ratio maps to (documentation and tables).
        replaces_knob: parameters that, given a value (a non-empty list, a non-zero rate),
            replace :attr:`knob` whatever the keep ratio (ToMe's ``r_per_block``); see
            :meth:`fixed_by`.
        trainable: the method has learned parts (a predictor, a fine-tuned backbone) that come
            from a safetensors artifact made by ``vitbench finetune`` (see ``vitbench.train.finetune``).
        requirements: what a model must have for the method (the one place it is declared).
        conformance: what the conformance kit should expect (:class:`Conformance`).
        version: semantics version of the method's numbers. Part of every cell key: raise it in
            the same commit as any change that changes what the method computes (its scores,
            counts, rounding, merge/prune step or defaults), so that stores re-evaluate records
            made by the earlier semantics instead of resuming or showing them.
    """

    name: ClassVar[str] = ""
    family: ClassVar[str] = "token"
    Params: ClassVar[type] = NoParams
    selections: ClassVar[tuple[str, ...]] = SELECTIONS
    knob: ClassVar[str] = ""
    replaces_knob: ClassVar[tuple[str, ...]] = ()
    summary: ClassVar[str] = ""
    trainable: ClassVar[bool] = False
    requirements: ClassVar[Requirements] = Requirements()
    conformance: ClassVar[Conformance] = Conformance()
    version: ClassVar[int] = 1

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """Default native parameters as a plain dict."""
        return dataclasses.asdict(cls.Params())

    @classmethod
    def map_keep_ratio(cls, keep_ratio: float, model: nn.Module) -> dict[str, Any]:
        """Native parameters realising ``keep_ratio`` on ``model`` (default: no mapping)."""
        return {}

    @classmethod
    def params_for(
        cls, keep_ratio: float, model: nn.Module, overrides: Mapping[str, Any] | None = None
    ) -> Any:
        """Build ``Params`` from the keep ratio, then apply user ``overrides`` (they win).

        Raises:
            UnsupportedModelError: ``model`` lacks what :attr:`requirements` declares (one line).
            VitbenchError: bad keep ratio or parameter.
        """
        cls.check_model(model)
        check_keep_ratio(keep_ratio)
        values = cls.map_keep_ratio(keep_ratio, model)
        values.update(overrides or {})
        return make_params(cls, values)

    @classmethod
    def fixed_by(cls, overrides: Mapping[str, Any]) -> dict[str, Any]:
        """The given parameters that fix the native setting whatever the keep ratio (name -> value).

        ``overrides`` win over :meth:`map_keep_ratio` (:meth:`params_for`), so a given :attr:`knob`
        makes every keep ratio the same setting; so does a parameter of :attr:`replaces_knob`
        given a value (an empty list or a zero rate leaves the knob in charge). Empty: the keep
        ratio still chooses the setting.
        """
        names = [cls.knob] if cls.knob else []
        names += [n for n in cls.replaces_knob if n in overrides and overrides[n]]
        return {n: overrides[n] for n in names if n in overrides}

    @classmethod
    def setting(cls, params: Any) -> str:
        """Short human-readable native setting: the knob, then any non-default parameter."""
        items = dataclasses.asdict(params)
        defaults = cls.defaults()
        parts = [f"{cls.knob}={_fmt(items[cls.knob])}"] if cls.knob in items else []
        parts += [f"{k}={_fmt(v)}" for k, v in items.items() if k != cls.knob and v != defaults.get(k)]
        return ", ".join(parts) or "-"

    @classmethod
    def supported(cls, model: nn.Module) -> str | None:
        """``None`` when ``model`` meets :attr:`requirements`, else the one-line reason it does not."""
        return unsupported_line(cls, model)

    @classmethod
    def check_model(cls, model: nn.Module, model_name: str | None = None) -> None:
        """Raise :class:`UnsupportedModelError` (one line) unless ``model`` meets :attr:`requirements`.

        Args:
            model: the model (its structure only is read; a ``meta``-device model works).
            model_name: name for the message (default: its timm architecture).
        """
        line = unsupported_line(cls, model, model_name)
        if line:
            raise UnsupportedModelError(line)


class TokenMethod(Method):
    """Token reduction: changes the forward of a loaded timm model, reversibly.

    ``apply`` returns a :class:`~vitbench.methods.patching.patch.Handle`; leaving its context restores the
    original classes bit-for-bit. ``schedule`` gives the tokens entering each block (prefix
    tokens included) for the model's input size (:func:`~vitbench.methods.patching.patch.input_tokens`:
    the native grid, or the configured input of a ``dynamic_img_size`` model).
    """

    family: ClassVar[str] = "token"
    requirements: ClassVar[Requirements] = Requirements(vit_blocks=True)

    @classmethod
    @abstractmethod
    def apply(cls, model: nn.Module, params: Any, selection: str = "scored", seed: int = 0) -> Any:
        """Patch ``model`` in place and return the undo handle."""

    @classmethod
    @abstractmethod
    def schedule(cls, model: nn.Module, params: Any) -> list[int]:
        """Tokens entering each block, prefix tokens included."""

    @classmethod
    def blocks_macs(cls, model: nn.Module, params: Any) -> int | None:
        """Closed-form MACs of the blocks (stem, final norm and head excluded), or ``None``.

        ``None`` (the default): each block's attention runs at the tokens entering it and its MLP
        at the tokens entering ``norm2``, which the conformance kit's closed form describes. A
        method whose blocks run parts of the attention at other counts (MCTF's one-step-ahead
        attention: q, k and the logits before the fusion, v, attention v and the projection after
        it) returns its own closed form here, without its declared ``gmacs_overhead``.
        """
        return None


class ChannelMethod(Method):
    """Channel pruning: returns a new, physically smaller model; never mutates its input.

    ``prune`` must build its result with :func:`vitbench.methods.slimming.slim.slim_model` (the harness
    stores the model's slim plan with its weights, :mod:`vitbench.harness.pruned`). A ``Params`` field
    ``finetune_epochs`` > 0 makes the harness fine-tune the pruned model after pruning.
    """

    family: ClassVar[str] = "channel"
    selections: ClassVar[tuple[str, ...]] = ("scored",)
    #: slimmable, and timm ViT blocks: the pruned model runs under the ``dense`` token counter
    requirements: ClassVar[Requirements] = Requirements(vit_blocks=True, slimmable=True)

    @classmethod
    @abstractmethod
    def prune(
        cls, model: nn.Module, params: Any, calib: Iterable[tuple[torch.Tensor, torch.Tensor]] | None
    ) -> nn.Module:
        """Return a pruned copy of ``model``; ``calib`` yields ``(images [B,3,H,W], labels [B])``."""

    @classmethod
    def token_handle(cls, model: nn.Module, params: Any, seed: int = 0) -> Any:
        """Token patch a pruned ``model`` runs under (VTC-LFC's token schedule); ``None``: none.

        The harness evaluates, measures and fine-tunes a pruned model inside this handle, or
        inside the ``dense`` token counter when it is ``None``.
        """
        return None


def register(cls: M) -> M:
    """Class decorator registering a method under its own ``name`` and ``family`` attributes.

    Example::

        @register
        class MyMethod(TokenMethod):
            name = "mymethod"  # the registry key, stated once
            ...

    Raises:
        ValueError: no ``name``, an unknown ``family``, or the name is already taken.
    """
    METHODS.register_self(cls)
    return cls


def make_params(cls: type[Method], values: Mapping[str, Any]) -> Any:
    """Instantiate ``cls.Params`` from ``values``, coercing types and rejecting unknown names."""
    fields = {f.name: f for f in dataclasses.fields(cls.Params)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        known = ", ".join(fields) or "none"
        raise VitbenchError(
            f"method '{cls.name}' has no parameter {', '.join(repr(u) for u in unknown)}; "
            f"its parameters are: {known}"
        )
    kwargs = {}
    for key, value in values.items():
        default = getattr(cls.Params(), key)
        kwargs[key] = _coerce(cls.name, key, value, default)
    try:
        return cls.Params(**kwargs)
    except (TypeError, ValueError) as exc:
        raise VitbenchError(f"method '{cls.name}': {exc}") from None


def _coerce(method: str, key: str, value: Any, default: Any) -> Any:
    if default is None or value is None:
        return value
    try:
        if isinstance(default, bool):
            if isinstance(value, str):
                if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(value)
                return value.lower() in ("true", "1", "yes")
            return bool(value)
        if isinstance(default, int):
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        if isinstance(default, float):
            return float(value)
        if isinstance(default, tuple):
            if isinstance(value, str):
                value = [v for v in value.strip("[]()").split(",") if v.strip()]
            return tuple(type(default[0])(v) if default else int(v) for v in value)
    except (TypeError, ValueError):
        kinds = {bool: "true or false", int: "an integer", float: "a number", tuple: "a list"}
        kind = kinds.get(type(default), f"of type {type(default).__name__}")
        raise VitbenchError(f"method '{method}': parameter {key}={value!r} is not {kind}") from None
    return value


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (tuple, list)):
        return "[" + ",".join(_fmt(x) for x in v) + "]"
    return str(v)


def token_method(name: str) -> type[TokenMethod]:
    """The registered token method ``name`` (one-line error for unknown or non-token methods)."""
    cls = METHODS.get(name)
    if not issubclass(cls, TokenMethod):
        raise VitbenchError(f"'{name}' is a {cls.family} method; this command takes token methods")
    return cls
