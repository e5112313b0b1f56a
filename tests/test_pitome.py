"""PiToMe against a re-derivation of the official code (hchautran/PiToMe @ 550b5de).

The reference below re-derives, from the official ``algo/pitome/merge.py`` (``pitome_vision``,
``pitome``, ``pitome_bsm``, ``merge_wavg``, ``merge_source``) and ``algo/pitome/patch/timm.py`` /
``deit.py`` (``PiToMeBlock``, ``PiToMeAttention``, the margins and the BSM layer split), a
whole forward of a timm DeiT written out step by step: unfused attention returning the head-mean
keys, ``r = floor(T - T * ratio)`` with T the tokens after the class token, energy
``elu(S - margin).mean(-1)``, protected tokens by descending energy, the alternating split, the
argmax partners, size-weighted merging, no proportional attention. It shares no code with
:mod:`vitbench.methods.pitome`.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import timm
import torch
import torch.nn.functional as F

from vbtest import make_model, model_input
from vitbench.core.demo import load_demo_model
from vitbench.core.errors import VitbenchError
from vitbench.measure import count_gmacs
from vitbench.methods import METHODS
from vitbench.methods import pitome as pitome_mod
from vitbench.testing.variants import variant_model

PITOME = METHODS.get("pitome")


# -- the reference (official semantics, re-derived) -------------------------------------------


def _ref_attention(attn: Any, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``PiToMeAttention.forward``: softmax(q k^T * scale) v, projected; and k averaged over heads."""
    b, n, c = x.shape
    h = attn.num_heads
    q, k, v = attn.qkv(x).reshape(b, n, 3, h, c // h).permute(2, 0, 3, 1, 4)
    probs = ((q @ k.transpose(-2, -1)) * attn.scale).softmax(dim=-1)
    out = attn.proj((probs @ v).transpose(1, 2).reshape(b, n, c))
    return out, k.mean(dim=1)


def _ref_merge(
    metric: torch.Tensor, ratio: float, margin: float, bsm: bool
) -> tuple[Any, torch.Tensor, torch.Tensor]:
    """``pitome_vision`` with a class token: (merge(x, mode), merged-away mask, partner map).

    The mask [B, T] marks image tokens merged away; the partner map [B, T] holds, for each of
    them, the image-token index it merged into (-1 elsewhere): the merged sets of the block.
    """
    metric = metric[:, 1:, :]
    bsz, t, _ = metric.shape
    r = math.floor(t - t * ratio)
    m = F.normalize(metric, p=2, dim=-1)
    sim = m @ m.transpose(-1, -2)
    energy = F.elu(sim - margin, alpha=1.0).mean(dim=-1)
    indices = torch.argsort(energy, descending=True)
    rows = torch.arange(bsz)[:, None]
    if bsm:
        a_idx, b_idx = indices[..., ::2], indices[..., 1::2]
        scores = sim[rows[:, :, None], a_idx[:, :, None], b_idx[:, None, :]]
        node_max, node_idx = scores.max(dim=-1)
        edge = node_max.argsort(dim=-1, descending=True)
        unm, src = edge[:, r:], edge[:, :r]
        dst_of_src = node_idx.gather(1, src)
        kept_idx, src_idx = a_idx.gather(1, unm), a_idx.gather(1, src)
    else:
        merge_idx, protected = indices[..., : 2 * r], indices[..., 2 * r :]
        a_idx, b_idx = merge_idx[..., ::2], merge_idx[..., 1::2]
        scores = sim[rows[:, :, None], a_idx[:, :, None], b_idx[:, None, :]]
        dst_of_src = scores.max(dim=-1).indices
        kept_idx, src_idx = protected, a_idx

    def merge(x: torch.Tensor, mode: str) -> torch.Tensor:
        cls_tok, img = x[:, :1], x[:, 1:]
        dst = img[rows, b_idx].scatter_reduce(
            1, dst_of_src[..., None].expand(-1, -1, x.shape[-1]), img[rows, src_idx], reduce=mode
        )
        return torch.cat([cls_tok, img[rows, kept_idx], dst], dim=1)

    merged = torch.zeros(bsz, t, dtype=torch.bool)
    partner = torch.full((bsz, t), -1)
    merged[rows, src_idx] = True
    partner[rows, src_idx] = b_idx.gather(1, dst_of_src)
    return merge, merged, partner


def _ref_forward(
    model: Any, x: torch.Tensor, ratio: float, mae: bool = False, pool_by_size: bool = True
) -> tuple[torch.Tensor, list[int], list[Any]]:
    """The official DeiT (or MAE) patch's forward: (logits, tokens entering each block, merged sets).

    Merged sets per block: (merged-away mask, partner map) over that block's image tokens, and the
    source matrix [B, N_out, N_in0] after the block (``merge_source``, mode ``amax``). ``mae``: the
    MAE patch, whose BSM half is the second one and whose average pool weights tokens by size
    (the patch mean: the official sum of size-weighted tokens over their total size).
    """
    depth = len(model.blocks)
    margins = [0.75 - 0.75 * (i / depth) for i in range(depth)]
    n_bsm = math.ceil(depth * 0.5)
    use_bsm = [True] * n_bsm + [False] * (depth - n_bsm)
    if mae:
        use_bsm = [False] * n_bsm + [True] * (depth - n_bsm)
    h = model.patch_embed(x)
    h = model.norm_pre(model.patch_drop(model._pos_embed(h)))
    size, source = None, torch.eye(h.shape[1])[None].expand(h.shape[0], -1, -1)
    counts, sets = [], []
    for i, blk in enumerate(model.blocks):
        counts.append(h.shape[1])
        out, metric = _ref_attention(blk.attn, blk.norm1(h))
        h = h + out
        t = h.shape[1] - 1
        if ratio < 1.0 and math.floor(t - t * ratio) > 0:
            # r = 0: the official protected path fails (max over an empty set) and the BSM path
            # only reorders tokens; vitbench leaves such a block's tokens as they are
            merge, merged, partner = _ref_merge(metric, ratio, margins[i], use_bsm[i])
            if size is None:
                size = torch.ones_like(h[..., :1])
            h = merge(h * size, "sum")
            size = merge(size, "sum")
            h = h / size
            source = merge(source, "amax")
            sets.append((merged, partner, source))
        h = h + blk.mlp(blk.norm2(h))
    h = model.norm(h)
    if mae and pool_by_size and size is not None:
        pooled = (h * size)[:, 1:].sum(dim=1) / size[:, 1:].sum(dim=1)
        return model.head(model.fc_norm(pooled)), counts, sets
    return model.forward_head(h), counts, sets


# -- vitbench, instrumented --------------------------------------------------------------------


def _vitbench(
    model: Any, x: torch.Tensor, ratio: float, monkeypatch: pytest.MonkeyPatch, **overrides: Any
) -> tuple[torch.Tensor, list[int], list[Any]]:
    """vitbench's logits, counted tokens and per-block merged sets (from the recorded plans)."""
    plans: list[Any] = []
    real = pitome_mod.plan_merge

    def spy(*args: Any, **kwargs: Any) -> Any:
        plans.append(real(*args, **kwargs))
        return plans[-1]

    monkeypatch.setattr(pitome_mod, "plan_merge", spy)
    params = PITOME.params_for(1.0, model, {"ratio": ratio, **overrides})
    with torch.inference_mode(), PITOME.apply(model, params) as handle:
        logits = model(x)
        counts = handle.tokens_per_block
    monkeypatch.undo()
    sets = []
    source = torch.eye(counts[0])[None].expand(x.shape[0], -1, -1)
    for plan in plans:
        t = plan.keep.shape[1] + plan.dst.shape[1] + plan.src.shape[1]
        rows = torch.arange(x.shape[0])[:, None]
        merged = torch.zeros(x.shape[0], t, dtype=torch.bool)
        partner = torch.full((x.shape[0], t), -1)
        merged[rows, plan.src] = True
        partner[rows, plan.src] = plan.dst.gather(1, plan.into)
        source = pitome_mod.merge_function(plan, 1)(source, "amax")
        sets.append((merged, partner, source))
    return logits, counts, sets


def _deit_s_tiny() -> Any:
    """DeiT-S (width 384, 6 heads, 12 blocks) at 112x112: 49 image tokens; sharpened random qkv."""
    torch.manual_seed(0)
    model = timm.create_model("deit_small_patch16_224", pretrained=False, img_size=112).eval()
    with torch.no_grad():
        for blk in model.blocks:
            blk.attn.qkv.weight.mul_(4.0)
    return model


# not 0.5: it merges the last two tokens of a block, whose energies are equal by symmetry, so
# which one is A is decided by rounding (the merged token is the same either way)
@pytest.mark.parametrize("ratio", [0.9, 0.75, 0.6])
@pytest.mark.parametrize("which", ["deit-s", "demo"])
def test_pitome_equals_the_official_merge(which: str, ratio: float, monkeypatch: pytest.MonkeyPatch) -> None:
    """Logits within 1e-5, identical token counts per block, identical merged sets per block."""
    model = _deit_s_tiny() if which == "deit-s" else load_demo_model()
    x = model_input(model, batch=3, seed=1)
    with torch.inference_mode():
        ref, ref_counts, ref_sets = _ref_forward(model, x, ratio)
    got, counts, sets = _vitbench(model, x, ratio, monkeypatch)
    assert counts == ref_counts
    assert counts == PITOME.schedule(model, PITOME.params_for(1.0, model, {"ratio": ratio}))
    assert counts[-1] < counts[0]
    assert len(sets) == len(ref_sets) and ref_sets
    for i, ((merged, partner, source), (ref_merged, ref_partner, ref_source)) in enumerate(
        zip(sets, ref_sets, strict=True)
    ):
        assert torch.equal(merged, ref_merged), f"block {i}: other tokens merged away"
        assert torch.equal(partner, ref_partner), f"block {i}: other partners"
        assert torch.equal(source, ref_source), f"block {i}: other merged groups"
    assert (got - ref).abs().max().item() <= 1e-5


@pytest.mark.parametrize("ratio", [0.9, 0.75])
def test_pitome_on_an_average_pooled_model_equals_the_official_mae_patch(
    ratio: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MAE-style head (global_pool='avg', fc_norm): size-weighted pooling, BSM in the second half."""
    torch.manual_seed(0)
    model = timm.create_model(
        "deit_small_patch16_224", pretrained=False, img_size=112, global_pool="avg", fc_norm=True
    ).eval()
    with torch.no_grad():
        for blk in model.blocks:
            blk.attn.qkv.weight.mul_(4.0)
    x = model_input(model, batch=3, seed=1)
    with torch.inference_mode():
        ref, ref_counts, ref_sets = _ref_forward(model, x, ratio, mae=True)
        plain, _, _ = _ref_forward(model, x, ratio, mae=True, pool_by_size=False)
    got, counts, sets = _vitbench(model, x, ratio, monkeypatch, bsm_half="second")
    assert counts == ref_counts and counts[-1] < counts[0]
    for (merged, partner, _), (ref_merged, ref_partner, _) in zip(sets, ref_sets, strict=True):
        assert torch.equal(merged, ref_merged) and torch.equal(partner, ref_partner)
    assert (got - ref).abs().max().item() <= 1e-5
    assert (got - plain).abs().max().item() > 1e-3  # the test can tell the pooling apart


@pytest.mark.slow
def test_pitome_equals_the_official_merge_on_full_deit_s(monkeypatch: pytest.MonkeyPatch) -> None:
    """DeiT-S at 224x224 (196 image tokens), random weights, the official ratio 0.9 (~20 s on a CPU)."""
    torch.manual_seed(0)
    model = timm.create_model("deit_small_patch16_224", pretrained=False).eval()
    x = model_input(model, batch=2, seed=1)
    with torch.inference_mode():
        ref, ref_counts, ref_sets = _ref_forward(model, x, 0.9)
    got, counts, sets = _vitbench(model, x, 0.9, monkeypatch)
    assert counts == ref_counts == [197, 178, 161, 145, 131, 118, 107, 97, 88, 80, 73, 66]
    assert len(sets) == len(ref_sets) == 12
    for ours, theirs in zip(sets, ref_sets, strict=True):
        assert all(torch.equal(a, b) for a, b in zip(ours, theirs, strict=True))
    assert (got - ref).abs().max().item() <= 1e-5


def test_pitome_schedule_follows_the_official_ratio() -> None:
    """floor(T - T * ratio) per block from T = 196 (the official DeiT-S count at ratio 0.9)."""
    model = timm.create_model("deit_small_patch16_224", pretrained=False)
    sched = PITOME.schedule(model, PITOME.params_for(1.0, model, {"ratio": 0.9}))
    want, n = [], 196
    for _ in range(12):
        want.append(n + 1)
        n -= math.floor(n - n * 0.9)
    assert sched == want and sched[:3] == [197, 178, 161]


#: The repository's evaluation logs (deit_eval.csv @ 5cac99d, mae_eval.csv @ 64b56cf): GFLOPs of
#: the official counter, as printed, that vitbench's schedule reproduces (see the card's
#: repository_logs for the five rows of other code versions). (width, depth, image tokens, ratio).
LOGGED_GFLOPS = {
    ("deit_tiny", 192, 12, 196, 0.9): 0.7116453120000014,
    ("deit_tiny", 192, 12, 196, 0.95): 0.9263915520000028,
    ("deit_tiny", 192, 12, 196, 0.975): 1.0715316479999968,
    ("deit_small", 384, 12, 196, 0.9): 2.69819519999999,
    ("deit_small", 384, 12, 196, 0.95): 3.4824668160000134,
    ("deit_small", 384, 12, 196, 0.975): 4.001893632000012,
    ("deit_base", 768, 12, 196, 0.9): 10.496008703999959,
    ("deit_base", 768, 12, 196, 0.95): 13.48366847999995,
    ("deit_base", 768, 12, 196, 0.975): 15.439108607999978,
    ("mae_large", 1024, 24, 196, 0.95): 37.15146137599972,
    ("mae_large", 1024, 24, 196, 0.975): 47.9506943999998,
    ("mae_huge", 1280, 32, 256, 0.9): 52.15818751999992,
    ("mae_huge", 1280, 32, 256, 0.925): 65.39899647999934,
    ("mae_huge", 1280, 32, 256, 0.95): 86.1913676800005,
    ("mae_huge", 1280, 32, 256, 0.975): 119.29231104000054,
}


@pytest.mark.parametrize("key", list(LOGGED_GFLOPS), ids=lambda k: f"{k[0]}-{k[4]}")
def test_pitome_schedule_reproduces_the_official_logged_gflops(key: tuple[str, int, int, int, float]) -> None:
    """The official counter (12NC^2 + 2N^2C per block at the tokens entering it) over vitbench's schedule."""
    _name, c, depth, tokens, ratio = key
    attn, _mlp = pitome_mod.pitome_schedule(tokens + 1, 1, depth, ratio)
    gflops = sum(12 * n * c * c + 2 * n * n * c for n in attn) / 1e9
    assert abs(gflops - LOGGED_GFLOPS[key]) < 1e-9, (gflops, LOGGED_GFLOPS[key])


def test_pitome_margins_and_matching_halves() -> None:
    assert pitome_mod.margins(12)[0] == 0.75 and pitome_mod.margins(12)[6] == 0.375
    assert pitome_mod.bsm_blocks(12, "first") == (True,) * 6 + (False,) * 6
    assert pitome_mod.bsm_blocks(5, "first") == (True,) * 3 + (False,) * 2
    assert pitome_mod.bsm_blocks(5, "second") == (False,) * 3 + (True,) * 2


def test_pitome_protects_low_energy_tokens() -> None:
    """Protected merging: the 2r highest-energy tokens merge pairwise; isolated tokens survive."""
    # tokens 0-3 are near-duplicates (a large cluster, high energy), 4 and 5 are isolated
    base = torch.tensor([[1.0, 0.0, 0.0], [0.99, 0.1, 0.0], [0.98, 0.0, 0.1], [0.97, 0.1, 0.1]])
    metric = torch.cat([base, torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])])[None]
    energy, sim = pitome_mod.energy_scores(metric, 0.5)
    assert set(energy.argsort(descending=True)[0, :4].tolist()) == {0, 1, 2, 3}
    plan = pitome_mod.plan_merge(energy, lambda a, b: sim[0][a[0]][:, b[0]][None], 2, bsm=False)
    assert set(plan.keep[0].tolist()) == {4, 5}
    assert set(plan.src[0].tolist()) | set(plan.dst[0].tolist()) == {0, 1, 2, 3}


def test_pitome_random_selection_keeps_counts_and_sizes() -> None:
    model = make_model("vit")
    x = model_input(model, batch=2)
    params = PITOME.params_for(1.0, model, {"ratio": 0.75})
    with torch.inference_mode():
        with PITOME.apply(model, params, "scored") as h:
            scored = model(x)
            counts, sizes = h.tokens_per_block, h.token_sizes
        with PITOME.apply(model, params, "random", seed=3) as h:
            rand = model(x)
            assert h.tokens_per_block == counts
            assert h.token_sizes is not None and sizes is not None
            assert torch.equal(h.token_sizes.sum(dim=1), sizes.sum(dim=1))
    assert not torch.allclose(scored, rand)


def test_pitome_keep_ratio_maps_to_evit_gmacs() -> None:
    """The mapped ratio's closed-form GMACs are the closest on the grid to EViT's at that keep ratio."""
    model = timm.create_model("deit_small_patch16_224", pretrained=False)
    assert PITOME.map_keep_ratio(1.0, model) == {"ratio": 1.0}
    ratio = PITOME.map_keep_ratio(0.7, model)["ratio"]
    evit = METHODS.get("evit")
    with evit.apply(model, evit.params_for(0.7, model)):
        target = count_gmacs(model)

    def gmacs(r: float) -> float:
        with PITOME.apply(model, PITOME.params_for(1.0, model, {"ratio": r})):
            return count_gmacs(model)

    here = abs(gmacs(ratio) - target)
    assert here <= abs(gmacs(round(ratio + 0.005, 3)) - target) + 0.01
    assert here <= abs(gmacs(round(ratio - 0.005, 3)) - target) + 0.01


def test_pitome_refuses_bad_settings() -> None:
    model = make_model("vit")
    with pytest.raises(VitbenchError, match="outside \\[0.5, 1\\]"):
        PITOME.params_for(1.0, model, {"ratio": 0.3})
    with pytest.raises(VitbenchError, match="bsm_half .middle. is unknown"):
        PITOME.params_for(1.0, model, {"bsm_half": "middle"})
    with pytest.raises(VitbenchError, match="pool"):
        PITOME.params_for(0.7, variant_model("map"))
