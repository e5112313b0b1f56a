"""Conformance suite generated from the registry: every token method x every tiny model x check."""

from __future__ import annotations

import pytest
import torch

from vbtest import CLSLESS_MODELS, TINY_MODELS, make_model, model_input
from vitbench.core.errors import VitbenchError
from vitbench.methods import METHODS, TokenMethod
from vitbench.methods.patching.patch import prefix_tokens

TOKEN_METHODS = [n for n in METHODS.names() if issubclass(METHODS.get(n), TokenMethod)]
#: Methods that need a class token (token 0's attention row / feature, or a class-token head).
NEEDS_CLASS_TOKEN = {"evit", "etps", "lfe", "dynamicvit", "dtps", "lfs", "vtc-lfc"}
#: Tiny models without a class token ("layerscale" = timm's test_vit2: 1 register, avg pool).
CLSLESS = {"layerscale", *CLSLESS_MODELS}
CASES = [
    (m, k)
    for m in TOKEN_METHODS
    for k in sorted({*TINY_MODELS, *CLSLESS_MODELS})
    if not (m in NEEDS_CLASS_TOKEN and k in CLSLESS)
]
IDS = [f"{m}-{k}" for m, k in CASES]

_MODELS: dict[str, torch.nn.Module] = {}


def _model(key: str) -> torch.nn.Module:
    if key not in _MODELS:
        _MODELS[key] = make_model(key)
    return _MODELS[key]


def _params(cls, keep: float, model: torch.nn.Module):
    """Params at ``keep``; trainable methods get fresh untrained parts (``artifact=init``)."""
    return cls.params_for(keep, model, {"artifact": "init"} if cls.trainable else None)


def _low_keep(cls, model: torch.nn.Module) -> float:
    """0.3, or 0.4 where the method refuses 0.3 on this model with a one-line error.

    DynamicViT-style schedules keep int(n0 * rho^3) image tokens at the last stage: 0 for the
    16-patch distilled model at rho 0.3, which the method must reject rather than run.
    """
    try:
        _params(cls, 0.3, model)
    except VitbenchError as exc:
        assert "0 of" in str(exc) and "\n" not in str(exc)
        return 0.4
    return 0.3


def _logits(model: torch.nn.Module, x: torch.Tensor, handle=None, ids=None) -> torch.Tensor:
    if handle is not None:
        handle.set_sample_ids(ids)
    with torch.inference_mode():
        return model(x)


@pytest.mark.parametrize(("method", "key"), CASES, ids=IDS)
def test_identity_parity(method: str, key: str) -> None:
    model, cls = _model(key), METHODS.get(method)
    x = model_input(model)
    ref = _logits(model, x)
    params = _params(cls, 1.0, model)
    for sel in cls.selections:
        with cls.apply(model, params, sel, seed=0) as h:
            out = _logits(model, x, h)
        assert torch.equal(out, ref), f"{method} at keep 1.0 ({sel}) changed the logits"


@pytest.mark.parametrize(("method", "key"), CASES, ids=IDS)
def test_undo_bit_exact(method: str, key: str) -> None:
    model, cls = _model(key), METHODS.get(method)
    x = model_input(model)
    ref = _logits(model, x)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    classes = [type(b) for b in model.blocks]
    hooks = [len(b.attn.qkv._forward_hooks) for b in model.blocks]
    with cls.apply(model, _params(cls, 0.5, model), cls.selections[0], seed=0) as h:
        _logits(model, x, h)
    assert [type(b) for b in model.blocks] == classes
    assert [len(b.attn.qkv._forward_hooks) for b in model.blocks] == hooks
    assert not any(hasattr(b, "_vb_state") or hasattr(b.attn.qkv, "_vb_slot") for b in model.blocks)
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert torch.equal(_logits(model, x), ref)


@pytest.mark.parametrize(("method", "key"), CASES, ids=IDS)
def test_token_counts_match_schedule(method: str, key: str) -> None:
    model, cls = _model(key), METHODS.get(method)
    x = model_input(model)
    for keep in (0.7, _low_keep(cls, model)):
        params = _params(cls, keep, model)
        for sel in cls.selections:
            with cls.apply(model, params, sel, seed=0) as h:
                out = _logits(model, x, h)
                assert h.tokens_per_block == cls.schedule(model, params)
            assert torch.isfinite(out).all()
            if method != "dense":
                assert h.tokens_per_block[-1] < h.tokens_per_block[0], f"keep {keep} must reduce tokens"


@pytest.mark.parametrize(("method", "key"), CASES, ids=IDS)
def test_prefix_tokens_survive(method: str, key: str) -> None:
    """Prefix tokens leave every block as the unpatched block computes them, at the front."""
    model, cls = _model(key), METHODS.get(method)
    p = prefix_tokens(model)
    x = model_input(model)
    seen: list[tuple[int, torch.Tensor, torch.Tensor]] = []
    hooks = [
        blk.register_forward_hook(lambda m, inp, out, i=i: seen.append((i, inp[0], out)))
        for i, blk in enumerate(model.blocks)
    ]
    try:
        with cls.apply(model, _params(cls, _low_keep(cls, model), model), cls.selections[0], seed=0) as h:
            _logits(model, x, h)
            sizes = h.state.extra.get("size")
    finally:
        for hook in hooks:
            hook.remove()
    original = type(model.blocks[0]).__mro__[0]
    for i, inp, out in seen:
        if method == "tome" and i > 0:
            break  # proportional attention changes later blocks; sizes are checked below
        with torch.inference_mode():
            ref = original.forward(model.blocks[i], inp)
        torch.testing.assert_close(out[:, :p], ref[:, :p], rtol=1e-4, atol=1e-5)
    if sizes is not None:
        assert torch.equal(sizes[:, :p], torch.ones_like(sizes[:, :p])), "a prefix token was merged"


@pytest.mark.parametrize(
    ("method", "key"),
    [c for c in CASES if "random" in METHODS.get(c[0]).selections],
    ids=[i for c, i in zip(CASES, IDS) if "random" in METHODS.get(c[0]).selections],
)
def test_random_selection_seeded(method: str, key: str) -> None:
    model, cls = _model(key), METHODS.get(method)
    x = model_input(model, batch=3)
    ids = torch.tensor([10, 11, 12])
    params = _params(cls, 0.5, model)

    def run(seed: int, xb: torch.Tensor, idb: torch.Tensor) -> torch.Tensor:
        with cls.apply(model, params, "random", seed=seed) as h:
            return _logits(model, xb, h, idb)

    a, b, c = run(0, x, ids), run(0, x, ids), run(1, x, ids)
    assert torch.equal(a, b), "same seed must give the same selection"
    assert not torch.allclose(a, c), "another seed must change the selection"
    alone = run(0, x[2:], ids[2:])  # batch composition must not matter
    torch.testing.assert_close(alone, a[2:], rtol=1e-4, atol=1e-5)


REFUSAL_CASES = [(m, k) for m in METHODS.names() for k in sorted(CLSLESS)]


@pytest.mark.parametrize(("method", "key"), REFUSAL_CASES, ids=[f"{m}-{k}" for m, k in REFUSAL_CASES])
def test_class_token_methods_refuse_clsless_models(method: str, key: str) -> None:
    """Every method on a CLS-less model: those that need a class token refuse it in one line."""
    from vitbench.methods.requirements import UnsupportedModelError

    model, cls = _model(key), METHODS.get(method)
    reason = cls.supported(model)
    if method not in NEEDS_CLASS_TOKEN:
        assert reason is None, reason
        _params(cls, 0.5, model)  # configures without complaint (token methods run in CASES)
        return
    assert reason is not None and "\n" not in reason
    assert reason.startswith(f"{method} needs a class token") and "no class token" in reason
    regs = int(model.num_reg_tokens)
    assert (f"{regs} register token" in reason) == (regs > 0)
    assert "methods that run on it: " in reason and "tome" in reason and "evit," not in reason
    with pytest.raises(UnsupportedModelError, match=f"^{method} needs a class token") as err:
        _params(cls, 0.5, model)
    assert str(err.value) == reason
