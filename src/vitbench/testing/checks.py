"""The conformance checks: what every token and channel method must satisfy on tiny random ViTs.

Each check is a function ``check(cls, key)`` taking a registered method class and a tiny-model key
(:mod:`vitbench.testing.models`) and raising ``AssertionError`` with a one-line reason when the
method breaks the contract. What a check expects of a particular method comes from the method's
own declarations (``requirements``, ``selections``, ``Params``, ``conformance``), never from its
name. :func:`cases` lists the (check, model) pairs that apply to a method.

Token methods (:class:`~vitbench.methods.base.TokenMethod`):
    identity: keep ratio 1 gives the dense logits bit for bit, for every selection.
    undo: leaving the handle restores classes, hooks, weights and logits bit for bit.
    schedule: the tokens entering each block equal ``schedule`` (keep 0.7 and a low keep).
    prefix: prefix tokens leave every block as the unpatched block computes them (up to the
        first reduction for ``changes_attention`` methods) and are never merged.
    random: ``selection="random"`` is seeded: same seed same logits, another seed differs, and a
        sample's result does not depend on its batch.
    gmacs: the MAC counter equals the closed form of the counted token schedule (attention and
        MLP tokens per block, :func:`vitbench.measure.vit_schedule_macs`; or the method's own
        ``blocks_macs``) plus the stem and head, up to the declared ``gmacs_overhead``.
Channel methods (:class:`~vitbench.methods.base.ChannelMethod`):
    identity: keep ratio 1 gives the dense logits (atol 1e-5) and the dense dimensions.
    undo: ``prune`` never mutates its input (weights, classes, logits) and returns a slimmed copy.
    schedule: every block of the pruned model sees the tokens of its token handle (VTC-LFC's
        schedule) or all tokens when it has none.
    random: a ``seed`` parameter is honoured: same seed same structure, another seed differs.
    gmacs: the MAC counter on the pruned model equals the closed form of its dimensions
        (:func:`vitbench.methods.slimming.channel.macs_function`), exactly.
Both:
    refusal: on models without a class token the method refuses exactly when its
        ``requirements`` say so, in one line, and ``params_for`` raises the same line.
    card: the method card names the method, its family, its ``Params`` defaults and the model
        variants it supports (``variants:``).
    variant: on each ViT variant of :data:`vitbench.testing.variants.VARIANTS` (class token,
        distillation token, registers, ``no_embed_class``, average pooling with and without a
        class token, ``dynamic_img_size`` at two other sizes, a non-square input, attention
        pooling) the method computes the reference semantics, or refuses the variant in one line
        before it runs; the card lists exactly the variants it runs (:mod:`vitbench.testing.variants`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from vitbench.core.errors import VitbenchError
from vitbench.measure.gmacs import count_macs, vit_dims, vit_schedule_macs
from vitbench.methods.base import ChannelMethod, Method, TokenMethod
from vitbench.methods.patching.patch import input_tokens, prefix_tokens
from vitbench.methods.requirements import UnsupportedModelError, runnable_methods
from vitbench.methods.slimming.channel import macs_function
from vitbench.methods.slimming.slim import model_dims, source_plan
from vitbench.report.cards import load_card
from vitbench.testing.common import card_path, check_prefix_outputs, params
from vitbench.testing.common import logits as _logits
from vitbench.testing.models import CLSLESS_MODELS, TINY_MODELS, calib_batches, make_model, model_input
from vitbench.testing.variants import VARIANTS, card_variants, channel_variant, token_variant

Check = Callable[[type[Method], str], None]

#: Default tiny models of token methods (all) and channel methods (a smaller set: pruning is slower).
TOKEN_MODELS: tuple[str, ...] = tuple(sorted({*TINY_MODELS, *CLSLESS_MODELS}))
CHANNEL_MODELS: tuple[str, ...] = ("distilled", "vit")

_MODELS: dict[str, nn.Module] = {}


def tiny(key: str) -> nn.Module:
    """The tiny model ``key``, built once per process (checks must leave it as they found it)."""
    if key not in _MODELS:
        _MODELS[key] = make_model(key)
    return _MODELS[key]


def low_keep(cls: type[Method], model: nn.Module) -> float:
    """0.3, or 0.4 where the method refuses 0.3 on this model with a one-line ``0 of`` error.

    DynamicViT-style schedules keep int(n0 * rho^3) image tokens at the last stage: 0 for the
    16-patch distilled model at rho 0.3, which the method must reject rather than run.
    """
    try:
        params(cls, 0.3, model)
    except VitbenchError as exc:
        assert "0 of" in str(exc) and "\n" not in str(exc), f"keep 0.3 refused with: {exc}"
        return 0.4
    return 0.3


# ---------------------------------------------------------------------------------------------
# token methods


def token_identity(cls: type[Method], key: str) -> None:
    """Keep ratio 1 leaves the logits bit-identical, for every selection."""
    assert issubclass(cls, TokenMethod)
    model = tiny(key)
    x = model_input(model)
    ref = _logits(model, x)
    p = params(cls, 1.0, model)
    for sel in cls.selections:
        with cls.apply(model, p, sel, seed=0) as h:
            out = _logits(model, x, h)
        assert torch.equal(out, ref), f"{cls.name} at keep 1.0 ({sel}) changed the logits on {key}"


def token_undo(cls: type[Method], key: str) -> None:
    """Leaving the handle restores block classes, hooks, weights and logits bit for bit."""
    assert issubclass(cls, TokenMethod)
    model = tiny(key)
    x = model_input(model)
    ref = _logits(model, x)
    blocks: Any = model.blocks
    state = {k: v.clone() for k, v in model.state_dict().items()}
    classes = [type(b) for b in blocks]
    hooks = [len(b.attn.qkv._forward_hooks) for b in blocks]
    with cls.apply(model, params(cls, 0.5, model), cls.selections[0], seed=0) as h:
        _logits(model, x, h)
    assert [type(b) for b in blocks] == classes, f"{cls.name} left patched block classes"
    assert [len(b.attn.qkv._forward_hooks) for b in blocks] == hooks, f"{cls.name} left qkv hooks"
    leftovers = [
        i for i, b in enumerate(blocks) if hasattr(b, "_vb_state") or hasattr(b.attn.qkv, "_vb_slot")
    ]
    assert not leftovers, f"{cls.name} left patch state on blocks {leftovers}"
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, state[k])]
    assert not changed, f"{cls.name} changed weights {changed[:3]}"
    assert torch.equal(_logits(model, x), ref), f"{cls.name} changed the logits after undo"


def token_schedule(cls: type[Method], key: str) -> None:
    """Tokens entering each block equal ``schedule`` at keep 0.7 and at a low keep."""
    assert issubclass(cls, TokenMethod)
    model = tiny(key)
    x = model_input(model)
    for keep in (0.7, low_keep(cls, model)):
        p = params(cls, keep, model)
        for sel in cls.selections:
            with cls.apply(model, p, sel, seed=0) as h:
                out = _logits(model, x, h)
                counted = h.tokens_per_block
            want = cls.schedule(model, p)
            if cls.conformance.adaptive:  # per-image counts: the schedule is their upper bound
                over = [i for i, (c, w) in enumerate(zip(counted, want, strict=True)) if c > w]
                assert not over and counted[0] == want[0], (
                    f"{cls.name} keep {keep} ({sel}): counted {counted} exceed the bound {want}"
                )
            else:
                assert counted == want, f"{cls.name} keep {keep} ({sel}): counted {counted}, schedule {want}"
            assert torch.isfinite(out).all(), f"{cls.name} keep {keep} ({sel}) gave non-finite logits"
            if cls.conformance.reduces:
                assert counted[-1] < counted[0], f"{cls.name} keep {keep} ({sel}) did not reduce tokens"


def token_prefix(cls: type[Method], key: str) -> None:
    """Prefix tokens leave every block as the unpatched block computes them, at the front."""
    assert issubclass(cls, TokenMethod)
    model = tiny(key)
    blocks: Any = model.blocks
    p = prefix_tokens(model)
    x = model_input(model)
    seen: list[tuple[int, torch.Tensor, torch.Tensor]] = []
    hooks = [
        blk.register_forward_hook(lambda m, inp, out, i=i: seen.append((i, inp[0], out)))
        for i, blk in enumerate(blocks)
    ]
    try:
        with cls.apply(model, params(cls, low_keep(cls, model), model), cls.selections[0], seed=0) as h:
            _logits(model, x, h)
            sizes = h.state.extra.get("size")
    finally:
        for hook in hooks:
            hook.remove()
    check_prefix_outputs(cls, model, seen, cls.name)  # up to the first reduction; sizes below
    if sizes is not None:
        assert torch.equal(sizes[:, :p], torch.ones_like(sizes[:, :p])), f"{cls.name} merged a prefix token"


def token_random(cls: type[Method], key: str) -> None:
    """Random selection is seeded per sample: same seed same logits, another seed differs."""
    assert issubclass(cls, TokenMethod)
    model = tiny(key)
    x = model_input(model, batch=3)
    ids = torch.tensor([10, 11, 12])
    p = params(cls, 0.5, model)

    def run(seed: int, xb: torch.Tensor, idb: torch.Tensor) -> torch.Tensor:
        with cls.apply(model, p, "random", seed=seed) as h:
            return _logits(model, xb, h, idb)

    a, b, c = run(0, x, ids), run(0, x, ids), run(1, x, ids)
    assert torch.equal(a, b), f"{cls.name}: the same seed gave another random selection"
    assert not torch.allclose(a, c), f"{cls.name}: another seed gave the same random selection"
    alone = run(0, x[2:], ids[2:])
    torch.testing.assert_close(
        alone, a[2:], rtol=1e-4, atol=1e-5, msg=f"{cls.name}: batch composition mattered"
    )


@contextmanager
def _token_counts(model: nn.Module) -> Iterator[dict[str, list[int]]]:
    """Record tokens entering each block's attention (``norm1``), MLP (``norm2``) and the final norm."""
    seen: dict[str, list[int]] = {"attn": [], "mlp": [], "norm": []}
    blocks: Any = model.blocks
    hooks = []
    for blk in blocks:
        hooks.append(blk.norm1.register_forward_pre_hook(lambda m, a: seen["attn"].append(a[0].shape[1])))
        hooks.append(blk.norm2.register_forward_pre_hook(lambda m, a: seen["mlp"].append(a[0].shape[1])))
    norm: Any = getattr(model, "norm", None)
    if isinstance(norm, nn.LayerNorm):
        hooks.append(norm.register_forward_pre_hook(lambda m, a: seen["norm"].append(a[0].shape[1])))
    try:
        yield seen
    finally:
        for hook in hooks:
            hook.remove()


def _blocks_closed_form(model: nn.Module, seen: dict[str, list[int]]) -> int:
    dim, attn_dim, hidden, _ = vit_dims(model)
    return vit_schedule_macs(seen["attn"], seen["mlp"], dim, attn_dim, hidden) + 5 * dim * sum(seen["norm"])


def token_gmacs(cls: type[Method], key: str) -> None:
    """Counted MACs = closed form of the counted token schedule + stem/head (+ declared overhead)."""
    assert issubclass(cls, TokenMethod)
    model = tiny(key)
    x = model_input(model, batch=1)
    with _token_counts(model) as seen:
        dense = count_macs(model, x)
    stem_head = dense - _blocks_closed_form(model, seen)
    p = params(cls, 0.5, model)
    with cls.apply(model, p, cls.selections[0], seed=0) as h, _token_counts(model) as seen:
        h.set_sample_ids(None)
        counted = count_macs(model, x)
    if cls.conformance.adaptive:  # the handle's per-image closed form must equal the counter
        costs = h.image_costs()
        assert costs is not None and costs.macs.shape == (1,), f"{cls.name}: no per-image costs"
        closed = stem_head + int(costs.macs[0])  # blocks and the final norm of that image
    else:
        want = cls.schedule(model, p)
        own = cls.blocks_macs(model, p)
        if own is None:
            assert seen["attn"] == want, f"{cls.name}: attention tokens {seen['attn']} != schedule"
            closed = stem_head + _blocks_closed_form(model, seen)
        else:  # the method's own closed form of its blocks; the final norm as counted
            assert h.tokens_per_block == want, f"{cls.name}: tokens {h.tokens_per_block} != schedule"
            closed = stem_head + own + 5 * vit_dims(model)[0] * sum(seen["norm"])
    extra = counted - closed
    limit = cls.conformance.gmacs_overhead * dense
    assert 0 <= extra <= limit, (
        f"{cls.name} on {key}: counter {counted} vs closed form {closed} MACs: "
        f"extra {extra / dense:+.2%} of dense, declared overhead {cls.conformance.gmacs_overhead:.2%}"
    )


# ---------------------------------------------------------------------------------------------
# channel methods


_PRUNED: dict[tuple[str, float, str, tuple[tuple[str, Any], ...]], tuple[nn.Module, Any]] = {}


def _prune(
    cls: type[Method], keep: float, key: str, fresh: bool = False, **over: Any
) -> tuple[nn.Module, nn.Module, Any]:
    """``(input model, pruned model, params)``; pruned models are reused across checks unless ``fresh``."""
    assert issubclass(cls, ChannelMethod)
    model = tiny(key)
    tag = (cls.name, keep, key, tuple(sorted(over.items())))
    if fresh or tag not in _PRUNED:
        p = params(cls, keep, model)
        if over:
            p = dataclasses.replace(p, **over)
        _PRUNED[tag] = (cls.prune(model, p, calib_batches(model)), p)
    pruned, p = _PRUNED[tag]
    return model, pruned, p


def channel_identity(cls: type[Method], key: str) -> None:
    """Keep ratio 1 gives the dense logits and the dense dimensions."""
    model, pruned, _ = _prune(cls, 1.0, key)
    x = model_input(model)
    assert model_dims(pruned) == model_dims(model), f"{cls.name} at keep 1.0 removed channels on {key}"
    with torch.inference_mode():
        torch.testing.assert_close(
            pruned(x), model(x), rtol=0, atol=1e-5, msg=lambda m: f"{cls.name} at keep 1.0 on {key}: {m}"
        )


def channel_undo(cls: type[Method], key: str) -> None:
    """``prune`` leaves its input untouched and returns a slimmed copy (a slim plan attached)."""
    model = tiny(key)
    x = model_input(model)
    ref = _logits(model, x)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    classes = [type(m) for m in model.modules()]
    _, pruned, _ = _prune(cls, 0.5, key, fresh=True)
    assert pruned is not model, f"{cls.name}.prune returned its input; return a new model"
    assert [type(m) for m in model.modules()] == classes, f"{cls.name}.prune changed the input's modules"
    changed = [k for k, v in model.state_dict().items() if k not in state or not torch.equal(v, state[k])]
    assert not changed and len(state) == len(model.state_dict()), (
        f"{cls.name}.prune changed weights {changed[:3]}"
    )
    assert torch.equal(_logits(model, x), ref), f"{cls.name}.prune changed the input's logits"
    assert source_plan(pruned) is not None, f"{cls.name}.prune must build its result with slim_model"
    if cls.conformance.reduces:
        assert model_dims(pruned) != model_dims(model), f"{cls.name} at keep 0.5 removed no channel on {key}"


def channel_schedule(cls: type[Method], key: str) -> None:
    """Blocks of the pruned model see the tokens of its token handle, or all tokens without one."""
    assert issubclass(cls, ChannelMethod)
    model, pruned, p = _prune(cls, 0.5, key)
    x = model_input(model)
    handle = cls.token_handle(pruned, p)
    with _token_counts(pruned) as seen:
        if handle is None:
            _logits(pruned, x)
            counted = [input_tokens(pruned)] * len(seen["attn"])
        else:
            with handle as h:
                out = _logits(pruned, x, h)
                counted = h.tokens_per_block
            assert torch.isfinite(out).all(), f"{cls.name}: non-finite logits under its token handle"
    assert seen["attn"] == counted, (
        f"{cls.name} on {key}: blocks saw {seen['attn']} tokens, handle says {counted}"
    )


def channel_random(cls: type[Method], key: str) -> None:
    """The ``seed`` parameter decides the structure: same seed same plan, another seed differs."""
    _, a, _ = _prune(cls, 0.5, key, seed=0)
    _, b, _ = _prune(cls, 0.5, key, fresh=True, seed=0)
    _, c, _ = _prune(cls, 0.5, key, seed=1)
    plan_a, plan_b, plan_c = source_plan(a), source_plan(b), source_plan(c)
    assert plan_a == plan_b, f"{cls.name}: the same seed gave another structure"
    assert plan_a != plan_c, f"{cls.name}: another seed gave the same structure"


def channel_gmacs(cls: type[Method], key: str) -> None:
    """Counted MACs of the pruned model equal the closed form of its dimensions, exactly."""
    model, pruned, _ = _prune(cls, 0.5, key)
    counted = count_macs(pruned, model_input(model, batch=1))
    closed = macs_function(pruned)(model_dims(pruned))
    assert counted == closed, f"{cls.name} on {key}: counter {counted} != closed form {closed:.0f} MACs"


# ---------------------------------------------------------------------------------------------
# both families


def refusal(cls: type[Method], key: str) -> None:
    """On a model without a class token: refuse exactly per ``requirements``, in one line."""
    model = tiny(key)
    reason = cls.supported(model)
    if cls.requirements.unmet(model) is None:
        assert reason is None, reason
        params(cls, 0.5, model)  # configures without complaint
        return
    assert reason is not None and "\n" not in reason, f"{cls.name}: refusal is not one line: {reason!r}"
    assert reason.startswith(f"{cls.name} needs "), reason
    others = runnable_methods(model)
    assert reason.endswith(f"methods that run on it: {', '.join(others)}") or not others, reason
    if cls.requirements.class_token or cls.requirements.class_token_head:
        assert "no class token" in reason, reason
        regs = int(getattr(model, "num_reg_tokens", 0) or 0)
        assert (f"{regs} register token" in reason) == (regs > 0), reason
    try:
        params(cls, 0.5, model)
    except UnsupportedModelError as exc:
        assert str(exc) == reason, f"params_for said {exc!s}, supported said {reason}"
    else:
        raise AssertionError(f"{cls.name}.params_for accepted {key}, which it does not support")


def card(cls: type[Method], key: str = "") -> None:
    """The card names the method, states its family, its ``Params`` defaults and its variants."""
    path = card_path(cls)
    assert path.is_file(), f"{cls.name} has no card at {path}; write one (see CONTRIBUTING.md)"
    data = load_card(path)
    assert data["name"] == cls.name, f"card {path} names '{data['name']}', the method is '{cls.name}'"
    assert data.get("family") == cls.family, (
        f"card {path} says family {data.get('family')!r}, class {cls.family!r}"
    )
    want = {k: list(v) if isinstance(v, tuple) else v for k, v in cls.defaults().items()}
    assert (data.get("defaults") or {}) == want, (
        f"card {path} defaults {data.get('defaults')} != Params {want}"
    )
    card_variants(cls)  # a 'variants:' list of known model variants


#: check name -> (token version, channel version); ``None``: does not apply to that family.
CHECKS: dict[str, tuple[Check | None, Check | None]] = {
    "identity": (token_identity, channel_identity),
    "undo": (token_undo, channel_undo),
    "schedule": (token_schedule, channel_schedule),
    "prefix": (token_prefix, None),
    "random": (token_random, channel_random),
    "gmacs": (token_gmacs, channel_gmacs),
    "refusal": (refusal, refusal),
    "card": (card, card),
    "variant": (token_variant, channel_variant),
}


def check_for(cls: type[Method], check: str) -> Check | None:
    """The version of ``check`` for ``cls``'s contract (``None`` when it does not apply).

    Raises:
        VitbenchError: unknown check name, or a class that is neither a token nor a channel method.
    """
    if check not in CHECKS:
        raise VitbenchError(f"unknown conformance check '{check}'; use one of {', '.join(CHECKS)}")
    if issubclass(cls, TokenMethod):
        return CHECKS[check][0]
    if issubclass(cls, ChannelMethod):
        return CHECKS[check][1]
    raise VitbenchError(
        f"{cls.__qualname__} is neither a TokenMethod nor a ChannelMethod; subclass one of them"
    )


def _has_random(cls: type[Method]) -> bool:
    if issubclass(cls, TokenMethod):
        return "random" in cls.selections
    return "seed" in {f.name for f in dataclasses.fields(cls.Params)}


def cases(cls: type[Method]) -> list[tuple[str, str]]:
    """The ``(check, model key)`` pairs that apply to ``cls`` (``card`` once, with key ``""``)."""
    family_default = TOKEN_MODELS if issubclass(cls, TokenMethod) else CHANNEL_MODELS
    keys = cls.conformance.models or family_default
    unknown = sorted(set(keys) - {*TINY_MODELS, *CLSLESS_MODELS})
    if unknown:
        raise VitbenchError(f"{cls.name}: conformance.models names unknown tiny models {unknown}")
    runs = [k for k in keys if cls.requirements.unmet(tiny(k)) is None]
    out: list[tuple[str, str]] = []
    for check in CHECKS:
        if check_for(cls, check) is None or (check == "random" and not _has_random(cls)):
            continue
        if check == "card":
            out.append((check, ""))
        elif check == "refusal":
            out += [(check, k) for k in sorted(CLSLESS_MODELS) + ["layerscale"]]
        elif check == "variant":
            out += [(check, k) for k in VARIANTS]
        else:
            out += [(check, k) for k in runs]
    return out


def run_check(cls: type[Method], check: str, key: str) -> None:
    """Run one check of ``cls`` on the tiny model ``key`` (raises ``AssertionError`` on a breach)."""
    fn = check_for(cls, check)
    if fn is None:
        raise VitbenchError(f"check '{check}' does not apply to {cls.family} method '{cls.name}'")
    fn(cls, key)


__all__ = ["CHANNEL_MODELS", "CHECKS", "TOKEN_MODELS", "card_path", "cases", "check_for", "run_check", "tiny"]
