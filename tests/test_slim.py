"""Physical slimming: identity, exact slices, residual-stream consistency, closed-form MACs."""

from __future__ import annotations

import random

import pytest
import torch
from torch import nn

from vbtest import TINY_MODELS, make_model, model_input
from vitbench.core.errors import VitbenchError
from vitbench.measure.gmacs import count_macs
from vitbench.methods.slimming.slim import (
    BlockPlan,
    SlimAttention,
    SlimPlan,
    dims_macs,
    model_dims,
    slim_model,
)

KEYS = sorted(TINY_MODELS)


def _random_plan(model: nn.Module, seed: int, per_head_sets: bool = True) -> SlimPlan:
    rng = random.Random(seed)
    dims = model_dims(model)
    emb = rng.sample(range(dims.embed), dims.embed // 2)
    blocks = []
    for h, dq, dv, m in dims.blocks:
        heads = sorted(rng.sample(range(h), rng.randint(1, h)))
        nq, nv = rng.randint(1, dq), rng.randint(1, dv)
        shared_q = rng.sample(range(dq), nq)
        qk = tuple(tuple(rng.sample(range(dq), nq) if per_head_sets else shared_q) for _ in heads)
        v = tuple(tuple(rng.sample(range(dv), nv)) for _ in heads)
        blocks.append(BlockPlan(tuple(heads), qk, v, tuple(rng.sample(range(m), rng.randint(1, m)))))
    return SlimPlan.from_dict(SlimPlan(tuple(emb), tuple(blocks)).to_dict())  # sorted form


def _closed_form(model: nn.Module) -> int:
    pe = model.patch_embed
    fc = not isinstance(model.fc_norm, nn.Identity)
    heads = 2 if getattr(model, "head_dist", None) is not None else 1
    n = pe.num_patches + model.num_prefix_tokens
    return dims_macs(
        model_dims(model),
        n,
        pe.num_patches,
        3 * pe.patch_size[0] * pe.patch_size[1],
        model.num_classes,
        heads_out=heads,
        final_norm_tokens=0 if fc else None,
        fc_norm=fc,
    )


@pytest.mark.parametrize("key", KEYS)
def test_identity_plan_is_identity(key: str) -> None:
    model = make_model(key)
    x = model_input(model)
    slim = slim_model(model, SlimPlan.identity(model))
    assert all(isinstance(b.attn, SlimAttention) for b in slim.blocks)
    with torch.inference_mode():
        torch.testing.assert_close(slim(x), model(x), rtol=0, atol=1e-5)
    assert sum(p.numel() for p in slim.parameters()) == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("key", KEYS)
def test_input_not_mutated_and_forward_runs(key: str) -> None:
    model = make_model(key)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    slim = slim_model(model, _random_plan(model, 1))
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not any(isinstance(b.attn, SlimAttention) for b in model.blocks)
    with torch.inference_mode():
        out = slim(model_input(model))
    assert out.shape == (2, model.num_classes) and torch.isfinite(out).all()


@pytest.mark.parametrize("key", KEYS)
def test_closed_form_macs_irregular_widths(key: str) -> None:
    """The counter on the rebuilt modules equals the closed form with irregular h, d_qk != d_v, m."""
    model = make_model(key)
    for seed in (0, 1):
        slim = slim_model(model, _random_plan(model, seed))
        assert count_macs(slim, model_input(slim, batch=1)) == _closed_form(slim)
    assert count_macs(model, model_input(model, batch=1)) == _closed_form(model)


def test_slices_keep_exactly_the_planned_units() -> None:
    model = make_model("layerscale")
    plan = _random_plan(model, 3)
    slim = slim_model(model, plan)
    e = torch.tensor(plan.embed)
    for blk, new, bp in zip(model.blocks, slim.blocks, plan.blocks):
        h, d = blk.attn.num_heads, blk.attn.head_dim
        w = blk.attn.qkv.weight.reshape(3, h, d, -1)[:, :, :, e]
        nh, nq, nv, _ = bp.dims
        q, k, v = new.attn.qkv.weight.split([nh * nq, nh * nq, nh * nv])
        for n, hd in enumerate(bp.heads):
            qi, vi = torch.tensor(bp.qk[n]), torch.tensor(bp.v[n])
            assert torch.equal(q.reshape(nh, nq, -1)[n], w[0, hd, qi])
            assert torch.equal(k.reshape(nh, nq, -1)[n], w[1, hd, qi])  # q and k sliced alike
            assert torch.equal(v.reshape(nh, nv, -1)[n], w[2, hd, vi])
        cols = torch.tensor([hd * d + j for hd, sel in zip(bp.heads, bp.v) for j in sel])
        assert torch.equal(new.attn.proj.weight, blk.attn.proj.weight[e][:, cols])
        m = torch.tensor(bp.mlp)
        assert torch.equal(new.mlp.fc1.weight, blk.mlp.fc1.weight[m][:, e])
        assert torch.equal(new.mlp.fc1.bias, blk.mlp.fc1.bias[m])
        assert torch.equal(new.mlp.fc2.weight, blk.mlp.fc2.weight[e][:, m])
        assert torch.equal(new.ls1.gamma, blk.ls1.gamma[e]) and torch.equal(new.ls2.gamma, blk.ls2.gamma[e])
        assert new.attn.scale == blk.attn.scale  # scale kept at original head_dim**-0.5


@pytest.mark.parametrize("key", ["vit", "distilled", "registers", "layerscale"])
def test_embedding_width_consistent(key: str) -> None:
    """Every tensor that reads/writes the residual stream is sliced by the same embed indices."""
    model = make_model(key)
    plan = _random_plan(model, 4)
    slim = slim_model(model, plan)
    e = torch.tensor(plan.embed)
    old, new = model.state_dict(), slim.state_dict()
    E = model.embed_dim
    assert slim.embed_dim == slim.num_features == len(e)
    checked = 0
    for name in ("cls_token", "reg_token", "dist_token", "pos_embed"):
        if name in old:
            assert torch.equal(new[name], old[name][..., e])
            checked += 1
    assert torch.equal(new["patch_embed.proj.weight"], old["patch_embed.proj.weight"][e])
    for name in old:
        if name.endswith(("norm1.weight", "norm2.weight", "norm.weight", "norm.bias")) and old[
            name
        ].shape == (E,):
            assert torch.equal(new[name], old[name][e]), name
            checked += 1
    for head in ("head", "head_dist"):
        if f"{head}.weight" in old:
            assert torch.equal(new[f"{head}.weight"], old[f"{head}.weight"][:, e])
    assert checked > 2 * len(model.blocks)
    # no tensor keeps the old width on a residual-stream axis
    for name, t in new.items():
        assert E not in t.shape or E == t.shape[-1] == len(e), name


def test_compose_equals_sequential_slimming() -> None:
    model = make_model("vit")
    outer = _random_plan(model, 5)
    mid = slim_model(model, outer)
    inner = _random_plan(mid, 6)
    once = slim_model(model, outer.compose(inner))
    twice = slim_model(mid, inner)
    x = model_input(model)
    with torch.inference_mode():
        torch.testing.assert_close(once(x), twice(x), rtol=0, atol=1e-6)


def test_plan_json_roundtrip_and_bad_plans() -> None:
    model = make_model("vit")
    plan = _random_plan(model, 7)
    assert SlimPlan.from_json(plan.to_json()) == plan
    ident = SlimPlan.identity(model)
    b0 = ident.blocks[0]
    bad_width = BlockPlan(b0.heads, (b0.qk[0], b0.qk[1][:3]), b0.v, b0.mlp)
    cases = [
        SlimPlan((), ident.blocks),
        SlimPlan(ident.embed, ident.blocks[:-1]),
        SlimPlan(ident.embed, (bad_width, *ident.blocks[1:])),
        SlimPlan(ident.embed, (BlockPlan(b0.heads, b0.qk, b0.v, (0, 10_000)), *ident.blocks[1:])),
        SlimPlan(ident.embed, (BlockPlan((), (), (), b0.mlp), *ident.blocks[1:])),
    ]
    for bad in cases:
        with pytest.raises(VitbenchError) as err:
            slim_model(model, bad)
        assert "\n" not in str(err.value)
    with pytest.raises(VitbenchError):
        SlimPlan.from_json('{"embed": [0]}')
