"""The model-variant matrix of the conformance kit: every method runs a ViT variant right, or refuses it.

A method card lists the variants of :data:`VARIANTS` the method supports (``variants:``). For
every (method, variant) the check ``variant`` asserts one of two things:

* the method refuses the variant in one line before it runs (``supported`` and ``params_for``
  give the same :class:`~vitbench.methods.requirements.UnsupportedModelError` line) and its card
  does not list the variant; or
* its card lists the variant and the method computes the variant's reference semantics.

Token methods, on the variant's own input size:
    keep ratio 1 gives the dense logits bit for bit (unless the method declares its ``identity``
    check an expected failure, as ATS, whose keep 1 still samples), and leaving the handle
    restores them;
    at keep 0.5 the logits are finite; block 0 sees the prefix tokens plus the patches of the
    actual input; the counted tokens equal ``schedule`` (adaptive methods: stay within it); on a
    ``dynamic_img_size`` model the
    native parameters and the schedule equal those of the same architecture built for the
    input's size (counts follow the actual grid, not the native one);
    prefix tokens leave every block at the front, as the unpatched block computes them (up to
    the first reduction for ``changes_attention`` methods), and are never merged (size 1);
    merge sizes of the image tokens add up to the patches of the input;
    an average-pooled model pools the final image tokens weighted by their merge sizes
    (the plain average when nothing was merged), as ToMe's official ``tome/patch/mae.py``.
Channel methods, on the variant's own input size:
    the pruned model keeps the variant's token layout (prefix tokens, pooling, ``no_embed_class``,
    ``dynamic_img_size``), gives finite logits, its blocks see the actual input's tokens (or its
    token handle's counts), and it is smaller than the input model.

A method that runs a variant its card does not list, or refuses one it lists, fails the check.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import timm
import torch
from torch import nn

from vitbench.core.models import apply_data_config, dynamic_input
from vitbench.methods.base import ChannelMethod, Method, TokenMethod
from vitbench.methods.patching.patch import prefix_tokens
from vitbench.methods.requirements import UnsupportedModelError
from vitbench.methods.slimming.slim import model_dims
from vitbench.report.cards import load_card
from vitbench.testing.common import card_path, check_prefix_outputs, logits, params
from vitbench.testing.models import calib_batches, model_input


@dataclasses.dataclass(frozen=True)
class Variant:
    """One ViT variant of the matrix: a tiny timm model with random weights.

    Attributes:
        what: one line naming the variant (messages, documentation).
        arch: timm architecture name.
        kwargs: ``timm.create_model`` keyword arguments on top of :data:`BASE`.
        input_size: ``(H, W)`` a ``dynamic_img_size`` model is configured for and fed; ``None``:
            the model's native size.
    """

    what: str
    arch: str = "vit_tiny_patch16_224"
    kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    input_size: tuple[int, int] | None = None


#: Shared by every variant: 32x32 images, 8x8 patches (16 patches), width 32, 2 heads, 4 blocks.
BASE: dict[str, Any] = {
    "img_size": 32,
    "patch_size": 8,
    "embed_dim": 32,
    "depth": 4,
    "num_heads": 2,
    "num_classes": 10,
}

_DYNAMIC = {"dynamic_img_size": True}

#: The variant matrix: key -> variant. A method card's ``variants:`` names keys of this table.
VARIANTS: dict[str, Variant] = {
    "cls": Variant("class token, classifier on it"),
    "distilled": Variant("class and distillation tokens (DeiT distilled)", "deit_tiny_distilled_patch16_224"),
    "registers": Variant("class token and 2 register tokens", kwargs={"reg_tokens": 2}),
    "no-embed-class": Variant(
        "position embedding without the prefix tokens (no_embed_class)", kwargs={"no_embed_class": True}
    ),
    "gap": Variant(
        "no class token, global average pooling (fc_norm)",
        kwargs={"class_token": False, "global_pool": "avg"},
    ),
    "cls-gap": Variant(
        "class token and global average pooling (MAE style, fc_norm)", kwargs={"global_pool": "avg"}
    ),
    "dynamic-48": Variant("dynamic_img_size fed 48x48 (36 patches)", kwargs=_DYNAMIC, input_size=(48, 48)),
    "dynamic-24x40": Variant("dynamic_img_size fed 24x40 (15 patches)", kwargs=_DYNAMIC, input_size=(24, 40)),
    "non-square": Variant("fixed non-square 32x48 input (24 patches)", kwargs={"img_size": (32, 48)}),
    "map": Variant(
        "no class token, attention pooling (global_pool='map')",
        kwargs={"class_token": False, "global_pool": "map"},
    ),
}

_MODELS: dict[tuple[str, bool], nn.Module] = {}


def _build(key: str, native_at_input: bool) -> nn.Module:
    v = VARIANTS[key]
    kwargs = {**BASE, **v.kwargs}
    if native_at_input and v.input_size is not None:
        kwargs = {**kwargs, "img_size": v.input_size, "dynamic_img_size": False}
    torch.manual_seed(0)
    model = timm.create_model(v.arch, pretrained=False, **kwargs).eval()
    blocks: Any = model.blocks
    with torch.no_grad():
        for blk in blocks:
            blk.attn.qkv.weight.mul_(4.0)  # sharper attention: scored selections are not ties
    if v.input_size is not None and not native_at_input:
        apply_data_config(model, {"input_size": [3, *v.input_size]}, v.arch)
    return model


def variant_model(key: str, native_at_input: bool = False) -> nn.Module:
    """The tiny model of variant ``key`` in eval mode, built once per process.

    Args:
        key: a key of :data:`VARIANTS`.
        native_at_input: for a ``dynamic_img_size`` variant, the same architecture built with the
            variant's input size as its native size (the reference of the token counts).

    Raises:
        KeyError: unknown ``key``.
    """
    if key not in VARIANTS:
        raise KeyError(f"unknown model variant '{key}'; use one of {', '.join(VARIANTS)}")
    tag = (key, native_at_input and VARIANTS[key].input_size is not None)
    if tag not in _MODELS:
        _MODELS[tag] = _build(*tag)
    return _MODELS[tag]


def card_variants(cls: type[Method]) -> tuple[str, ...]:
    """The variants the method's card lists (``variants:``), checked against :data:`VARIANTS`.

    Raises:
        AssertionError: the card has no ``variants:`` list, or names an unknown variant.
    """
    path = card_path(cls)
    listed = load_card(path).get("variants")
    assert isinstance(listed, list), (
        f"card {path} has no 'variants:' list; list the model variants {cls.name} supports "
        f"(keys of vitbench.testing.variants.VARIANTS: {', '.join(VARIANTS)})"
    )
    unknown = [v for v in listed if v not in VARIANTS]
    assert not unknown, f"card {path} lists unknown variants {unknown}; use keys of {', '.join(VARIANTS)}"
    return tuple(listed)


def refuses(cls: type[Method], key: str, model: nn.Module) -> bool:
    """Whether ``cls`` refuses variant ``key``; asserts the refusal agrees with the card and is one line."""
    listed = key in card_variants(cls)
    reason = cls.supported(model)
    what = VARIANTS[key].what
    if reason is None:
        assert listed, (
            f"{cls.name} runs model variant '{key}' ({what}) but its card {card_path(cls).name} does not "
            "list it under variants:; list it once its semantics are checked, or refuse it in requirements"
        )
        return False
    assert not listed, f"{cls.name} refuses model variant '{key}', which its card lists: {reason}"
    assert "\n" not in reason and reason.startswith(f"{cls.name} needs "), f"refusal not one line: {reason!r}"
    try:
        params(cls, 0.5, model)
    except UnsupportedModelError as exc:
        assert str(exc) == reason, f"params_for said {exc!s}, supported said {reason}"
    else:
        raise AssertionError(f"{cls.name}.params_for accepted variant '{key}', which it does not support")
    return True


def input_patches(model: nn.Module, x: torch.Tensor) -> int:
    """Patches of the images ``x`` [B, C, H, W] on ``model``'s patch size (floor, no padding)."""
    ph, pw = (int(v) for v in model.patch_embed.patch_size)  # type: ignore[union-attr]
    return (x.shape[-2] // ph) * (x.shape[-1] // pw)


@contextmanager
def _recorded(model: nn.Module) -> Iterator[dict[str, Any]]:
    """Record each block's (input, output), the final norm's output and the pooled feature."""
    rec: dict[str, Any] = {"blocks": []}
    blocks: Any = model.blocks
    hooks = [
        blk.register_forward_hook(lambda m, a, out, i=i: rec["blocks"].append((i, a[0], out)))
        for i, blk in enumerate(blocks)
    ]
    hooks.append(model.norm.register_forward_hook(lambda m, a, out: rec.__setitem__("feats", out)))  # type: ignore[union-attr]
    fc_norm = getattr(model, "fc_norm", None)
    if isinstance(fc_norm, nn.Module):
        hooks.append(fc_norm.register_forward_pre_hook(lambda m, a: rec.__setitem__("pooled", a[0])))
    try:
        yield rec
    finally:
        for hook in hooks:
            hook.remove()


def _check_prefix(cls: type[Method], key: str, model: nn.Module, rec: dict[str, Any]) -> None:
    """Prefix tokens leave each block as the unpatched block computes them (up to the first merge)."""
    check_prefix_outputs(cls, model, rec["blocks"], f"{cls.name} on {key}")


def _check_pool(cls: type[Method], key: str, model: nn.Module, rec: dict[str, Any], sizes: Any) -> None:
    """An average-pooled model pools the final tokens weighted by merge size (plain mean when unmerged)."""
    vit: Any = model
    if vit.global_pool != "avg":
        return
    feats = rec["feats"]
    p = 0 if vit.pool_include_prefix else prefix_tokens(model)
    w = torch.ones_like(feats[..., :1]) if sizes is None else sizes.to(feats.dtype)
    want = (feats[:, p:] * w[:, p:]).sum(dim=1) / w[:, p:].sum(dim=1)
    torch.testing.assert_close(
        rec["pooled"],
        want,
        rtol=1e-5,
        atol=1e-6,
        msg=f"{cls.name} on {key}: the average pool is not the size-weighted mean of the final tokens",
    )


def token_variant(cls: type[Method], key: str) -> None:
    """A token method on variant ``key``: refused per its card, or right (module docstring)."""
    assert issubclass(cls, TokenMethod)
    model = variant_model(key)
    if refuses(cls, key, model):
        return
    x = model_input(model)
    dense = logits(model, x)
    kind = type(model)
    identity = "identity" not in dict(cls.conformance.expected_failures)  # ATS: keep 1.0 still samples
    with cls.apply(model, params(cls, 1.0, model), cls.selections[0], seed=0) as h:
        out = logits(model, x, h)
        assert not identity or torch.equal(out, dense), f"{cls.name} at keep 1.0 changed the logits of {key}"
        assert torch.isfinite(out).all(), f"{cls.name} at keep 1.0: non-finite logits on {key}"
    p = params(cls, 0.5, model)
    with cls.apply(model, p, cls.selections[0], seed=0) as h, _recorded(model) as rec:
        out = logits(model, x, h)
        counted, sizes = h.tokens_per_block, h.token_sizes
    assert type(model) is kind and torch.equal(logits(model, x), dense), f"{cls.name} did not undo on {key}"
    assert torch.isfinite(out).all(), f"{cls.name} gave non-finite logits on {key}"
    prefix, patches = prefix_tokens(model), input_patches(model, x)
    assert counted[0] == prefix + patches, (
        f"{cls.name} on {key}: block 0 saw {counted[0]} tokens; the input has {prefix} prefix tokens "
        f"and {patches} patches"
    )
    bound = cls.schedule(model, p)
    if cls.conformance.adaptive:  # per-image counts: the schedule is their upper bound
        assert all(c <= w for c, w in zip(counted, bound, strict=True)), (
            f"{cls.name} on {key}: counted {counted} exceed the bound {bound}"
        )
    else:
        assert counted == bound, f"{cls.name} on {key}: counted {counted}, schedule {bound}"
    if cls.conformance.reduces:
        assert counted[-1] < counted[0], f"{cls.name} at keep 0.5 did not reduce tokens on {key}"
    if dynamic_input(model):
        ref = variant_model(key, native_at_input=True)
        assert params(cls, 0.5, ref) == p, f"{cls.name} on {key}: parameters {p} come from another grid"
        assert cls.schedule(ref, p) == bound, f"{cls.name} on {key}: counts {bound} come from another grid"
    _check_prefix(cls, key, model, rec)
    if sizes is not None:
        assert torch.equal(sizes[:, :prefix], torch.ones_like(sizes[:, :prefix])), (
            f"{cls.name} merged a prefix token"
        )
        total = sizes[:, prefix:].sum(dim=(1, 2))
        assert torch.all(total == patches), (
            f"{cls.name} on {key}: merge sizes add up to {total}, not {patches}"
        )
    _check_pool(cls, key, model, rec, sizes)


_LAYOUT = ("num_prefix_tokens", "global_pool", "pool_include_prefix", "no_embed_class", "dynamic_img_size")


def channel_variant(cls: type[Method], key: str) -> None:
    """A channel method on variant ``key``: refused per its card, or right (module docstring)."""
    assert issubclass(cls, ChannelMethod)
    model = variant_model(key)
    if refuses(cls, key, model):
        return
    x = model_input(model)
    p = params(cls, 0.5, model)
    pruned = cls.prune(model, p, calib_batches(model))
    changed = [a for a in _LAYOUT if getattr(pruned, a, None) != getattr(model, a, None)]
    assert not changed, f"{cls.name} on {key}: the pruned model changed {changed}"
    handle = cls.token_handle(pruned, p)
    blocks: Any = pruned.blocks
    seen: list[int] = []
    hooks = [blk.register_forward_pre_hook(lambda m, a: seen.append(a[0].shape[1])) for blk in blocks]
    try:
        if handle is None:
            out = logits(pruned, x)
            want = [prefix_tokens(model) + input_patches(model, x)] * len(blocks)
        else:
            with handle as h:
                out = logits(pruned, x, h)
                want = h.tokens_per_block
    finally:
        for hook in hooks:
            hook.remove()
    assert torch.isfinite(out).all(), f"{cls.name} gave non-finite logits on {key}"
    assert seen == want and seen[0] == prefix_tokens(model) + input_patches(model, x), (
        f"{cls.name} on {key}: blocks saw {seen} tokens, expected {want}"
    )
    if cls.conformance.reduces:
        assert model_dims(pruned) != model_dims(model), f"{cls.name} at keep 0.5 removed no channel on {key}"


__all__ = [
    "BASE",
    "VARIANTS",
    "Variant",
    "card_variants",
    "channel_variant",
    "input_patches",
    "refuses",
    "token_variant",
    "variant_model",
]
