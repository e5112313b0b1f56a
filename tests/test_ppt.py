"""PPT against a re-derivation of the official code (xjwu1024/PPT @ 706bcdd).

The reference below writes out, from the official ``ppt_deit.py`` (``PPTAttention`` with
``score_assignment_step``, the plain ``block``, ``pp_block_adaptive``, ``PPTVisionTransformer``)
and ``tome.py`` (``bipartite_soft_matching`` with a class token, ``merge_wavg``, ``parse_r``), a
whole forward of a timm DeiT step by step: explicit attention with the proportional-attention
bias in every block once sizes exist, the significance ``sum_h A[CLS] * ||v||`` normalised over
the tokens after the class token (the class token scored 2), the unbiased variance criterion,
the split of the batch into a pooled and a pruned sub-batch, the bipartite matching and
size-weighted merge of the pooled one, the descending sort and ``[:, :-r]`` of the pruned one,
and the reassembly in batch order. It tracks, per image, which input tokens every token holds
(the official ``trace_source``: ``amax`` merges, gathers for pruning). It shares no code with
:mod:`vitbench.methods.ppt`.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import timm
import torch

from vbtest import make_model, model_input
from vitbench.core.demo import load_demo_model
from vitbench.core.errors import VitbenchError
from vitbench.measure import count_gmacs
from vitbench.measure.gmacs import count_macs
from vitbench.methods import METHODS
from vitbench.methods import ppt as ppt_mod

PPT: Any = METHODS.get("ppt")


# -- the reference (official semantics, re-derived) -------------------------------------------


def _ref_attention(attn: Any, x: torch.Tensor, size: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
    """``PPTAttention.forward``: (projected output, keys averaged over heads, scores [B, N])."""
    b, n, _ = x.shape
    heads, d = attn.num_heads, attn.head_dim
    q, k, v = attn.qkv(x).reshape(b, n, 3, heads, d).permute(2, 0, 3, 1, 4)
    logits = (q @ k.transpose(-2, -1)) * attn.scale
    if size is not None:
        logits = logits + size.log()[:, None, None, :, 0]
    probs = logits.softmax(dim=-1)
    value_norm = v.transpose(1, 2).reshape(b, n, heads * d).norm(p=2, dim=-1)
    sig = (probs[:, :, 0].sum(dim=1) * value_norm)[:, 1:]
    sig = sig / sig.sum(dim=1, keepdim=True)
    scores = torch.cat([torch.full((b, 1), 2.0), sig], dim=1)
    out = attn.proj((probs @ v).transpose(1, 2).reshape(b, n, heads * d))
    return out, k.mean(dim=1), scores


def _ref_matching(metric: torch.Tensor, r: int) -> Any:
    """``bipartite_soft_matching(metric, r, class_token=True)``: returns ``merge(x, mode)``."""
    r = min(r, (metric.shape[1] - 1) // 2)
    unit = metric / metric.norm(dim=-1, keepdim=True)
    sim = unit[:, 0::2] @ unit[:, 1::2].transpose(1, 2)
    sim[:, 0, :] = -math.inf  # the class token (A side, position 0) is never merged away
    best, partner = sim.max(dim=2)
    edges = best.argsort(dim=1, descending=True)
    merged_a, kept_a = edges[:, :r], edges[:, r:].sort(dim=1).values
    into = partner.gather(1, merged_a)

    def merge(x: torch.Tensor, mode: str) -> torch.Tensor:
        c = x.shape[-1]
        side_a, side_b = x[:, 0::2], x[:, 1::2]
        keep = side_a.gather(1, kept_a[..., None].expand(-1, -1, c))
        moved = side_a.gather(1, merged_a[..., None].expand(-1, -1, c))
        side_b = side_b.scatter_reduce(1, into[..., None].expand(-1, -1, c), moved, reduce=mode)
        return torch.cat([keep, side_b], dim=1)

    return merge


def _rows(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``batch_index_select``: x[b, index[b]] for every image b."""
    return torch.stack([x[j, index[j]] for j in range(x.shape[0])])


def _ref_forward(
    model: Any, x: torch.Tensor, r: int, locs: list[int], threshold: float, prop_attn: bool = True
) -> tuple[Any, ...]:
    """The official forward: (logits, tokens entering each block, pooled flags and sources per PPT block).

    The pooled flags are [B] per PPT block (the variance criterion); the sources [B, N, N0] say
    which input tokens every token holds after that block.
    """
    h = model.norm_pre(model.patch_drop(model._pos_embed(model.patch_embed(x))))
    b, n0, _ = h.shape
    rs = [r] * len(model.blocks)  # parse_r of a constant r; only PPT blocks pop it
    size: torch.Tensor | None = None
    source = torch.eye(n0)[None].expand(b, -1, -1)
    counts, flags, sources, variances = [], [], [], []
    for i, blk in enumerate(model.blocks):
        counts.append(h.shape[1])
        if i not in locs:
            out, _, _ = _ref_attention(blk.attn, blk.norm1(h), size if prop_attn else None)
            h = h + out
            h = h + blk.mlp(blk.norm2(h))
            continue
        att_size = size if size is not None and prop_attn else torch.ones(b, h.shape[1], 1)
        out, metric, scores = _ref_attention(blk.attn, blk.norm1(h), att_size)
        h = h + out
        rr = min(rs.pop(0), (h.shape[1] - 1) // 2)
        var = torch.var(scores[:, 1:], dim=1)
        pool = var < threshold
        variances.append(var)
        if rr > 0:
            parts = []
            pool_rows, prune_rows = pool.nonzero()[:, 0], (~pool).nonzero()[:, 0]
            if len(pool_rows):
                merge = _ref_matching(metric[pool_rows], rr)
                sz = att_size[pool_rows]
                hx = merge(h[pool_rows] * sz, "sum")
                sz = merge(sz, "sum")
                parts.append((pool_rows, hx / sz, sz, merge(source[pool_rows], "amax")))
            if len(prune_rows):
                order = torch.sort(scores[prune_rows], descending=True, dim=-1).indices[:, :-rr]
                parts.append(
                    (
                        prune_rows,
                        _rows(h[prune_rows], order),
                        _rows(att_size[prune_rows], order),
                        _rows(source[prune_rows], order),
                    )
                )
            h = torch.zeros(b, h.shape[1] - rr, h.shape[2])
            size = torch.ones(b, h.shape[1], 1)
            source = torch.zeros(b, h.shape[1], n0)
            for rows, hx, sz, src in parts:
                h[rows], size[rows], source[rows] = hx, sz, src
        flags.append(pool)
        sources.append(source)
        h = h + blk.mlp(blk.norm2(h))
    return model.forward_head(model.norm(h)), counts, flags, sources, variances


# -- vitbench, instrumented --------------------------------------------------------------------


def _vitbench(model: Any, x: torch.Tensor, params: Any) -> tuple[Any, ...]:
    """vitbench's logits, counts, pooled flags per PPT block, sources after every PPT block, costs."""
    sources: list[torch.Tensor] = []
    with torch.inference_mode(), PPT.apply(model, params) as h:
        h.state.trace = True
        blocks = ppt_mod.ppt_blocks(len(model.blocks), params.blocks)
        hooks = [
            model.blocks[i].register_forward_hook(lambda *_: sources.append(h.state.extra["source"].clone()))
            for i in blocks
        ]
        try:
            logits = model(x)
        finally:
            for hook in hooks:
                hook.remove()
        counts = h.tokens_per_block
        flags = list(h.state.extra["pooled"])
        costs = h.image_costs()
    return logits, counts, flags, sources, costs


def _deit_s_tiny() -> Any:
    """DeiT-S (width 384, 6 heads, 12 blocks) at 112x112: 49 image tokens; sharpened random qkv."""
    torch.manual_seed(0)
    model = timm.create_model("deit_small_patch16_224", pretrained=False, img_size=112).eval()
    with torch.no_grad():
        for blk in model.blocks:
            blk.attn.qkv.weight.mul_(4.0)
    return model


def _split_threshold(model: Any, x: torch.Tensor, r: int, locs: list[int]) -> float:
    """A threshold between the first PPT block's variances, so the batch splits there."""
    with torch.inference_mode():
        var = _ref_forward(model, x, r, locs, 0.0)[4][0].sort().values
    mid = var.shape[0] // 2
    return float((var[mid - 1] + var[mid]) / 2)


CASES = {"deit-s": (_deit_s_tiny, 16), "demo": (load_demo_model, 20)}


@pytest.mark.parametrize("mode", ["pool", "prune", "split"])
@pytest.mark.parametrize("which", ["deit-s", "demo"])
def test_ppt_equals_the_official_forward(which: str, mode: str) -> None:
    """Logits within 1e-5; same counts per block; same decision and token sets per image and PPT block."""
    build, r = CASES[which]
    model = build()
    x = model_input(model, batch=6, seed=1)
    locs = list(ppt_mod.ppt_blocks(len(model.blocks), ()))
    fixed = {"pool": 1.0, "prune": 0.0}
    threshold = fixed[mode] if mode in fixed else _split_threshold(model, x, r, locs)
    params = PPT.params_for(1.0, model, {"r": r, "threshold": threshold})
    with torch.inference_mode():
        ref, ref_counts, ref_flags, ref_sources, _ = _ref_forward(model, x, r, locs, threshold)
    got, counts, flags, sources, costs = _vitbench(model, x, params)
    assert counts == ref_counts == PPT.schedule(model, params)
    assert counts[-1] < counts[0]
    assert torch.equal(costs.tokens, torch.tensor(counts)[None].expand(6, -1))
    assert len(flags) == len(ref_flags) == len(locs)
    for i, (mine, theirs) in enumerate(zip(flags, ref_flags, strict=True)):
        assert torch.equal(mine, theirs), f"PPT block {locs[i]}: other pool/prune decisions"
    for i, (mine, theirs) in enumerate(zip(sources, ref_sources, strict=True)):
        assert torch.equal(mine, theirs), f"PPT block {locs[i]}: other kept/pooled token sets"
    pooled = torch.stack(flags)
    if mode == "pool":
        assert pooled.all()
    elif mode == "prune":
        assert not pooled.any()
    else:
        assert pooled[0].any() and not pooled[0].all(), "the first PPT block should split the batch"
    assert (got - ref).abs().max().item() <= 1e-5


def test_ppt_equals_the_official_forward_without_proportional_attention() -> None:
    """prop_attn off: no log-size bias, and every PPT block merges with sizes of 1 (official)."""
    model = load_demo_model()
    x = model_input(model, batch=6, seed=2)
    locs = list(ppt_mod.ppt_blocks(len(model.blocks), ()))
    params = PPT.params_for(1.0, model, {"r": 20, "threshold": 1.0, "prop_attn": False})
    with torch.inference_mode():
        ref, ref_counts, _, ref_sources, _ = _ref_forward(model, x, 20, locs, 1.0, prop_attn=False)
        with_sizes = _ref_forward(model, x, 20, locs, 1.0)[0]
    got, counts, _, sources, _ = _vitbench(model, x, params)
    assert counts == ref_counts
    assert all(torch.equal(a, b) for a, b in zip(sources, ref_sources, strict=True))
    assert (got - ref).abs().max().item() <= 1e-5 < (with_sizes - ref).abs().max().item()


@pytest.mark.slow
def test_ppt_equals_the_official_forward_on_full_deit_s() -> None:
    """DeiT-S at 224x224 (196 image tokens), random weights, the README setting r 50 at blocks 3/6/9."""
    torch.manual_seed(0)
    model = timm.create_model("deit_small_patch16_224", pretrained=False).eval()
    x = model_input(model, batch=4, seed=1)
    threshold = _split_threshold(model, x, 50, [3, 6, 9])
    params = PPT.params_for(1.0, model, {"r": 50, "threshold": threshold})
    with torch.inference_mode():
        ref, ref_counts, ref_flags, ref_sources, _ = _ref_forward(model, x, 50, [3, 6, 9], threshold)
    got, counts, flags, sources, _ = _vitbench(model, x, params)
    assert counts == ref_counts == [197] * 4 + [147] * 3 + [97] * 3 + [49] * 2
    assert all(torch.equal(a, b) for a, b in zip(flags, ref_flags, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(sources, ref_sources, strict=True))
    assert (got - ref).abs().max().item() <= 1e-5


@pytest.mark.parametrize("selection", ["scored", "random"])
def test_ppt_batch_one_and_a_large_batch_agree(selection: str) -> None:
    """A batch of 48 gives every image its batch-1 prediction, decisions and MACs."""
    model = load_demo_model()
    x = model_input(model, batch=48, seed=3)
    locs = list(ppt_mod.ppt_blocks(len(model.blocks), ()))
    threshold = _split_threshold(model, x, 20, locs)
    params = PPT.params_for(1.0, model, {"r": 20, "threshold": threshold})
    ids = torch.arange(100, 148)
    with torch.inference_mode(), PPT.apply(model, params, selection, seed=0) as h:
        h.set_sample_ids(ids)
        batch = model(x)
        decided = torch.stack(h.state.extra["pooled"], dim=1)
        costs = h.image_costs()
        single, alone = [], []
        for j in range(48):
            h.set_sample_ids(ids[j : j + 1])
            single.append(model(x[j : j + 1]))
            alone.append(torch.stack(h.state.extra["pooled"], dim=1))
        one = h.image_costs()
    assert decided[:, 0].any() and not decided[:, 0].all()
    assert torch.equal(decided, torch.cat(alone))
    assert torch.equal(batch.argmax(1), torch.cat(single).argmax(1))
    assert (batch - torch.cat(single)).abs().max().item() <= 1e-5
    assert torch.equal(costs.macs, one.macs) and torch.equal(costs.sample_ids, one.sample_ids)


@pytest.mark.parametrize("selection", ["scored", "random"])
def test_ppt_image_macs_equal_the_counter_at_batch_one(selection: str) -> None:
    """Per-image closed-form MACs + stem and head = the counter on that image alone; pooling costs more."""
    model = load_demo_model()
    locs = list(ppt_mod.ppt_blocks(len(model.blocks), ()))
    xs = model_input(model, batch=8, seed=5)
    threshold = _split_threshold(model, xs, 20, locs)
    params = PPT.params_for(1.0, model, {"r": 20, "threshold": threshold})
    stem_head = _stem_and_head(model)
    with PPT.apply(model, params, selection) as h:
        seen: dict[bool, int] = {}
        for j in range(8):
            counted = count_macs(model, xs[j : j + 1])
            pooled = bool(h.state.extra["pooled"][0][0])
            c = h.image_costs()
            assert c is not None and c.macs.shape == (1,)
            seen.setdefault(pooled, counted)
            assert counted == stem_head + int(c.macs[0]), f"image {j}"
    assert set(seen) == {True, False}
    if selection == "scored":
        assert seen[True] > seen[False]  # the matching's similarity matrix
    else:
        assert seen[True] == seen[False]  # random partners: no similarity computed


def _stem_and_head(model: Any) -> int:
    """The counter's stem and head MACs: the dense count minus the closed form of blocks and final norm."""
    with PPT.apply(model, PPT.params_for(1.0, model, {"r": 0})) as h:
        dense = count_macs(model, model_input(model, batch=1))
        c = h.image_costs()
    assert c is not None
    return dense - int(c.macs[0])


def test_ppt_random_selection_keeps_counts_and_decisions() -> None:
    """Random selection: same counts and the variance decisions; other tokens; same seed same logits."""
    model = load_demo_model()
    x = model_input(model, batch=6, seed=4)
    locs = list(ppt_mod.ppt_blocks(len(model.blocks), ()))
    params = PPT.params_for(1.0, model, {"r": 20, "threshold": _split_threshold(model, x, 20, locs)})
    out = {}
    for selection, seed in (("scored", 0), ("random", 0), ("random", 0), ("random", 1)):
        with torch.inference_mode(), PPT.apply(model, params, selection, seed=seed) as h:
            logits = model(x)
            out.setdefault((selection, seed), []).append(
                (logits, h.tokens_per_block, torch.stack(h.state.extra["pooled"], 1))
            )
    ((ls, cs, ps),) = out[("scored", 0)]
    (l0, c0, p0), (l0b, _, _) = out[("random", 0)]
    ((l1, _, _),) = out[("random", 1)]
    assert cs == c0
    assert torch.equal(ps[:, 0], p0[:, 0])  # the first decision sees the same tokens
    assert torch.equal(l0, l0b) and not torch.allclose(l0, l1) and not torch.allclose(ls, l0)


def test_ppt_schedule_and_published_gmacs() -> None:
    """The README setting on DeiT-S: 197/147/97/49 tokens and 2.9 GMACs as the paper rounds."""
    model = timm.create_model("deit_small_patch16_224", pretrained=False)
    params = PPT.params_for(1.0, model, {"r": 50})
    assert PPT.schedule(model, params) == [197] * 4 + [147] * 3 + [97] * 3 + [49] * 2
    with PPT.apply(model, params):
        g = count_gmacs(model)
    assert round(g, 1) == 2.9 and 2.94 < g < 2.96
    assert PPT.map_keep_ratio(1.0, model) == {"r": 0}


def test_ppt_keep_ratio_maps_to_evit_gmacs() -> None:
    """The mapped r's GMACs are the closest to EViT's at that keep ratio (within the neighbours)."""
    model = timm.create_model("deit_small_patch16_224", pretrained=False)
    evit = METHODS.get("evit")
    for keep in (0.9, 0.7):
        r = PPT.map_keep_ratio(keep, model)["r"]
        with evit.apply(model, evit.params_for(keep, model)):
            target = count_gmacs(model)

        def gmacs(value: int) -> float:
            with PPT.apply(model, PPT.params_for(1.0, model, {"r": value})):
                return count_gmacs(model)

        here = abs(gmacs(r) - target)
        assert here <= abs(gmacs(r + 1) - target) + 0.002 and here <= abs(gmacs(r - 1) - target) + 0.002


def test_ppt_pooled_sizes_add_up_and_prefix_stays() -> None:
    """Pooled images: sizes add up to the patches; pruned ones: sizes stay 1; prefix never touched."""
    model = make_model("vit")
    x = model_input(model, batch=4)
    params = PPT.params_for(0.5, model)
    for threshold, whole in ((1.0, True), (0.0, False)):
        p = PPT.Params(params.r, params.blocks, threshold, True)
        with torch.inference_mode(), PPT.apply(model, p) as h:
            model(x)
            sizes = h.state.extra["sizes"]
            assert h.token_sizes is None
        patches = model.patch_embed.num_patches
        assert torch.equal(sizes[:, :1], torch.ones_like(sizes[:, :1]))
        if whole:
            assert torch.all(sizes[:, 1:].sum(dim=(1, 2)) == patches)
        else:
            assert torch.equal(sizes, torch.ones_like(sizes))


def test_ppt_refusals_and_params() -> None:
    model = load_demo_model()
    with pytest.raises(VitbenchError, match="r=40 cannot be realised"):
        PPT.schedule(model, PPT.params_for(1.0, model, {"r": 40}))
    with pytest.raises(VitbenchError, match="beyond the model's 8 blocks"):
        PPT.schedule(model, PPT.params_for(1.0, model, {"r": 4, "blocks": "3,9"}))
    with pytest.raises(VitbenchError, match="threshold -1.0 must be"):
        PPT.params_for(1.0, model, {"threshold": -1.0})
    with pytest.raises(VitbenchError, match="r must be >= 0"):
        PPT.params_for(1.0, model, {"r": -2})
    gap = make_model("gap")
    assert "class token" in (PPT.supported(gap) or "")


def test_ppt_records_keep_the_per_image_gmacs_and_say_what_varies() -> None:
    """CellCosts: the mean and percentiles of the per-image GMACs; the note says the tokens do not vary."""
    from types import SimpleNamespace

    import pandas as pd

    from vitbench.core.specs import ThroughputSpec
    from vitbench.harness.costs import CellCosts
    from vitbench.report.tables import adaptive_note

    model = load_demo_model()
    x = model_input(model, batch=12, seed=6)
    locs = list(ppt_mod.ppt_blocks(len(model.blocks), ()))
    params = PPT.params_for(1.0, model, {"r": 20, "threshold": _split_threshold(model, x, 20, locs)})
    costs = CellCosts(ThroughputSpec(enabled=False), "cpu", lambda spec: 1)
    cell = SimpleNamespace(model="demo", method=SimpleNamespace(name="ppt"), selection="scored")
    with torch.inference_mode(), PPT.apply(model, params) as h:
        h.set_sample_ids(torch.arange(12))
        model(x)
        pooled = torch.stack(h.state.extra["pooled"], dim=1)
        out = costs.of(cell, model, h, params, {"input_size": (3, 32, 32)})
    assert pooled.any() and not pooled.all()
    assert out["gmacs_images"] == 12 and out["gmacs_p10"] < out["gmacs_p90"]
    assert out["tokens_p10"] == out["tokens_p90"] == [float(t) for t in PPT.schedule(model, params)]
    frame = pd.DataFrame(
        {
            "method": ["ats", "ppt", "evit"],
            "gmacs_p50": [0.1, 0.2, None],
            "tokens_p10": ["[65.0, 40.0]", "[65.0, 45.0]", None],
            "tokens_p90": ["[65.0, 50.0]", "[65.0, 45.0]", None],
        }
    )
    assert adaptive_note(frame) == (
        "ats: tokens per image vary; ppt: GMACs per image vary (same tokens, per-image operation), "
        "placed at the mean GMACs over the evaluated images (records keep the p10/p50/p90)"
    )
