"""MCTF against a re-derivation of the official code (mlvlab/MCTF @ 2004da0).

The reference below re-derives, from the official ``models/deit.py`` (``VisionTransformer``:
its ``info`` dict, ``resetInfo``, ``forward`` with ``r_eval``), ``models/modules/blocks.py``
(``Block_DEIT.forward`` with ``one_step_ahead`` 0, 1 and 2), ``models/SA/MHSA.py`` (``MHSA``
with ``_attn``: q/k only, then v of the fused tokens with a given attention) and
``utils/mctf.py`` (``mctf``: the r rule; ``bipartite_soft_matching``: similarity,
informativeness and size criteria, the protected first rows, the two directions;
``merge_wavg`` with ``pooling_type`` 0-3; ``merge_source``), a whole forward of a timm DeiT
written out step by step on the timm model's weights. It shares no code with
:mod:`vitbench.methods.mctf`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest
import timm
import torch

from vbtest import model_input
from vitbench.core.demo import load_demo_model
from vitbench.core.errors import VitbenchError
from vitbench.measure import count_macs
from vitbench.methods import METHODS
from vitbench.methods import mctf as mctf_mod

MCTF = METHODS.get("mctf")
POOLING = {"size": 0, "attentive": 1, "max": 2, "mean": 3}


# -- the reference (official semantics, re-derived) -------------------------------------------


@dataclasses.dataclass
class Info:
    """The official ``info`` dict of one forward (student branch, evaluation)."""

    r_eval: float
    activate: tuple[int, ...]
    one_step_ahead: int = 1
    tau_sim: float = 1
    tau_info: float = 20
    tau_size: float = 40
    bidirection: int = 1
    pooling_type: int = 1
    prop_attn: int = 1
    num_protected: int = 1
    size: Any = None
    source: Any = None


def _expand_like(idx: torch.Tensor, src: torch.Tensor, n: int) -> torch.Tensor:
    """Index [B, n, 1] broadcast to gather n rows along dim -2 of ``src`` [B, ..., T, c]."""
    while idx.dim() < src.dim():
        idx = idx.unsqueeze(1)
    return idx.expand(*src.shape[:-2], n, src.shape[-1])


def _ref_matching(metric: torch.Tensor, attn: Any, size: Any, r: int, info: Info) -> Any:
    """Official ``bipartite_soft_matching``: returns ``merge(x, mode)``."""
    r1, r2 = (r // 2, r - r // 2) if info.bidirection else (r, 0)
    with torch.no_grad():
        metric = metric / metric.norm(dim=-1, keepdim=True)
        ea, eb = metric[..., ::2, :], metric[..., 1::2, :]
        if info.tau_sim:
            w_sim = ((ea @ eb.transpose(-1, -2) + 1) / 2) ** (1 / info.tau_sim)
        else:
            w_sim = torch.ones(ea.shape[0], ea.shape[1], eb.shape[1])
        w_info: Any = 1
        if info.tau_info > 0 and attn is not None:
            inv = 1 / attn.mean(dim=[1, 2])
            inv = inv / inv.max(1, keepdim=True)[0]
            w_info = (inv[..., ::2, None] * inv[..., 1::2, None].transpose(1, 2)) ** (1 / info.tau_info)
        w_size: Any = 1
        if info.tau_size and size is not None:
            inv_s = 1 / size
            inv_s = inv_s / inv_s.max(1, keepdim=True)[0]
            w_size = (inv_s[..., ::2, :] * inv_s[..., 1::2, :].transpose(1, 2)) ** (1 / info.tau_size)
        scores = w_sim * w_info * w_size
        scores[..., : info.num_protected, :] = -math.inf
        _, t1, t2 = scores.shape
        node_max, node_idx = scores.max(dim=-1)
        edges = node_max.argsort(dim=-1, descending=True)[..., None]
        unm_idx, src_idx = edges[..., r1:, :], edges[..., :r1, :]
        dst_idx = node_idx[..., None].gather(dim=-2, index=src_idx)
        unm_idx = unm_idx.sort(dim=1)[0]
        if info.bidirection:
            back = scores.gather(dim=-2, index=unm_idx.repeat(1, 1, t2)).transpose(1, 2)
            node_max2, node_idx2 = back.max(dim=-1)
            edges2 = node_max2.sort(dim=-1, descending=True)[1][..., None]
            unm_idx2, src_idx2 = edges2[..., r2:, :], edges2[..., :r2, :]
            dst_idx2 = node_idx2[..., None].gather(dim=-2, index=src_idx2)

    def merge(x: torch.Tensor, mode: str = "mean") -> torch.Tensor:
        a, b = x[..., ::2, :], x[..., 1::2, :]
        unm = a.gather(-2, _expand_like(unm_idx, a, t1 - r1))
        moved = a.gather(-2, _expand_like(src_idx, a, r1))
        b = b.scatter_reduce(-2, _expand_like(dst_idx, b, r1), moved, reduce=mode)
        if not info.bidirection:
            return torch.cat([unm, b], dim=-2)
        rest = b.gather(-2, _expand_like(unm_idx2, b, t2 - r2))
        moved2 = b.gather(-2, _expand_like(src_idx2, b, r2))
        unm = unm.scatter_reduce(-2, _expand_like(dst_idx2, unm, r2), moved2, reduce=mode)
        return torch.cat([unm, rest], dim=-2)

    return merge


def _ref_fuse(merge: Any, x: torch.Tensor, size: Any, attn: torch.Tensor, info: Info) -> tuple[Any, Any, Any]:
    """Official ``merge_wavg``: (x, size, fused attention or False)."""
    attn_n: Any = False
    if size is None:
        size = torch.ones_like(x[..., 0, None])
    osa = info.one_step_ahead
    if info.pooling_type == 1:
        size_max = size.amax(dim=-2, keepdim=True)
        attn_m = attn.mean(dim=[1, 2]).unsqueeze(-1)
        norm = merge(attn_m * (size / size_max), mode="sum")
        if osa:
            attn_n = merge(attn[..., None], mode="sum").squeeze(-1)
            attn_n = merge(attn_n * attn_m[:, None] * (size / size_max)[:, None], mode="sum").squeeze(-1)
            attn_n = attn_n / norm[:, None]
        x = merge(x * attn_m * (size / size_max), mode="sum")
        size = merge(size, mode="sum")
        return x / norm, size, attn_n
    if info.pooling_type == 2:
        x = merge(x, mode="amax")
        if osa:
            attn_n = merge(merge(attn[..., None], mode="sum").squeeze(-1), mode="amax").squeeze(-1)
        return x, merge(size, mode="sum"), attn_n
    if info.pooling_type == 3:
        count = torch.ones_like(size)
        x = merge(x, mode="sum")
        if osa:
            attn_n = merge(merge(attn[..., None], mode="sum").squeeze(-1), mode="sum").squeeze(-1)
        size, count = merge(size, mode="sum"), merge(count, mode="sum")
        if osa:
            attn_n = attn_n / count[:, None]
        return x / count, size, attn_n
    x = merge(x * size, mode="sum")
    if osa:
        attn_n = merge(attn[..., None], mode="sum").squeeze(-1)
        attn_n = merge(attn_n * size[:, None], mode="sum").squeeze(-1)
    size = merge(size, mode="sum")
    if osa:
        attn_n = attn_n / size[:, None]
    return x / size, size, attn_n


def _ref_mctf(x: torch.Tensor, attn: torch.Tensor, info: Info, trace: list[Any]) -> tuple[torch.Tensor, Any]:
    """Official ``mctf`` (evaluation: ``r = r_eval``), recording the merged groups."""
    t, p = x.shape[1], info.num_protected
    r: Any = info.r_eval
    if t - r < 10:
        r = t - 10
    r = min(int((t - p) * r) if r < 1 else r, (t - p) // 2)
    if r == 0:
        return x, False
    merge = _ref_matching(x, attn, info.size, r, info)
    if info.source is None:
        info.source = torch.eye(t)[None].expand(x.shape[0], t, t)
    info.source = merge(info.source, mode="amax")
    trace.append(info.source)
    x, info.size, attn_n = _ref_fuse(merge, x, info.size, attn, info)
    return x, attn_n


def _ref_mhsa(attn: Any, x: torch.Tensor, size: Any, given: Any = False) -> Any:
    """Official ``MHSA.forward``: q/k only with ``given=True``; v only with a given attention."""
    bsz, n, c = x.shape
    h = attn.num_heads
    w, b = attn.qkv.weight, attn.qkv.bias
    if isinstance(given, bool):
        if given:
            qk = (x @ w.T[:, : 2 * c] + b[: 2 * c]).reshape(bsz, n, 2, h, c // h).permute(2, 0, 3, 1, 4)
            q, k = qk[0], qk[1]
        else:
            qkv = attn.qkv(x).reshape(bsz, n, 3, h, c // h).permute(2, 0, 3, 1, 4)
            q, k, v = qkv[0], qkv[1], qkv[2]
        probs = (q @ k.transpose(-2, -1)) * attn.scale
        if size is not None:
            probs = probs + size.log()[:, None, None, :, 0]
        probs = probs.softmax(dim=-1)
        if given:
            return probs
    else:
        v = (x @ w.T[:, 2 * c :] + b[2 * c :]).reshape(bsz, n, h, c // h).permute(0, 2, 1, 3)
        probs = given
    out = attn.proj((probs @ v).transpose(1, 2).reshape(bsz, n, c))
    return out, probs


def _ref_block(blk: Any, i: int, x: torch.Tensor, info: Info, trace: list[Any]) -> torch.Tensor:
    """Official ``Block_DEIT.forward`` (student branch, eval)."""
    size = info.size if info.prop_attn else None
    active = i in info.activate
    if active and info.one_step_ahead == 1:
        probs = _ref_mhsa(blk.attn, blk.norm1(x), size, True)
        x, fused = _ref_mctf(x, probs, info, trace)
        x_attn, _ = _ref_mhsa(blk.attn, blk.norm1(x), size, fused)
    elif active and info.one_step_ahead == 2:
        probs = _ref_mhsa(blk.attn, blk.norm1(x), size, True)
        x, _ = _ref_mctf(x, probs, info, trace)
        size = info.size if info.prop_attn else None
        x_attn, _ = _ref_mhsa(blk.attn, blk.norm1(x), size)
    else:
        x_attn, probs = _ref_mhsa(blk.attn, blk.norm1(x), size)
    x = x + x_attn
    x = x + blk.mlp(blk.norm2(x))
    if active and not info.one_step_ahead:
        x, _ = _ref_mctf(x, probs, info, trace)
    return x


def _ref_forward(model: Any, x: torch.Tensor, info: Info) -> tuple[torch.Tensor, list[int], list[Any]]:
    """Official forward on ``model``'s weights: logits, tokens entering each block, merged groups."""
    h = model.norm_pre(model._pos_embed(model.patch_embed(x)))
    counts: list[int] = []
    trace: list[Any] = []
    for i, blk in enumerate(model.blocks):
        counts.append(h.shape[1])
        h = _ref_block(blk, i, h, info, trace)
    return model.head(model.norm(h)[:, 0]), counts, trace


# -- vitbench, instrumented --------------------------------------------------------------------


def _vitbench(
    model: Any,
    x: torch.Tensor,
    over: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    selection: str = "scored",
) -> tuple[torch.Tensor, list[int], list[Any]]:
    """vitbench's logits, counted tokens and merged groups after every fusion (from the plans)."""
    plans: list[Any] = []
    real = mctf_mod.merge_function

    def spy(plan: Any) -> Any:
        plans.append(plan)
        return real(plan)

    monkeypatch.setattr(mctf_mod, "merge_function", spy)
    params = MCTF.params_for(1.0, model, over)
    with torch.inference_mode(), MCTF.apply(model, params, selection) as handle:
        logits = model(x)
        counts = handle.tokens_per_block
    monkeypatch.undo()
    groups = []
    source = torch.eye(counts[0])[None].expand(x.shape[0], -1, -1)
    for plan in plans:
        source = real(plan)(source, "amax")
        groups.append(source)
    return logits, counts, groups


def _info(model: Any, over: dict[str, Any]) -> Info:
    p = MCTF.params_for(1.0, model, over)
    depth = len(model.blocks)
    return Info(
        r_eval=p.r if p.r < 1 else int(p.r),
        activate=p.layers or tuple(range(1, depth)),
        one_step_ahead=p.one_step_ahead,
        tau_sim=p.tau_sim,
        tau_info=p.tau_info,
        tau_size=p.tau_size,
        bidirection=int(p.bidirection),
        pooling_type=POOLING[p.fusion],
    )


def _deit_s_small() -> Any:
    """DeiT-S (width 384, 6 heads, 12 blocks) at 112x112: 49 image tokens; sharpened random qkv."""
    torch.manual_seed(0)
    model = timm.create_model("deit_small_patch16_224", pretrained=False, img_size=112).eval()
    with torch.no_grad():
        for blk in model.blocks:
            blk.attn.qkv.weight.mul_(4.0)
    return model


SETTINGS = {
    "official": {"r": 16},
    "fast": {"r": 0.35, "layers": "FAST"},
    "after-mlp-size": {"r": 8, "one_step_ahead": 0, "fusion": "size"},
    "precise-mean": {"r": 8, "one_step_ahead": 2, "fusion": "mean"},
    "one-way-max": {"r": 6, "bidirection": False, "fusion": "max"},
    "no-size-criterion": {"r": 12, "tau_size": 0, "tau_sim": 2},
}


def _setting(name: str, model: Any) -> dict[str, Any]:
    over = dict(SETTINGS[name])
    if over.get("layers") == "FAST":  # the official (3, 6, 9) of 12 blocks; (2, 4, 6) of the demo's 8
        over["layers"] = [3, 6, 9] if len(model.blocks) == 12 else [2, 4, 6]
    return over


def _compare(
    model: Any, x: torch.Tensor, over: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> tuple[float, list[int]]:
    with torch.inference_mode():
        ref, ref_counts, ref_groups = _ref_forward(model, x, _info(model, over))
    got, counts, groups = _vitbench(model, x, over, monkeypatch)
    assert counts == ref_counts, f"tokens per block {counts} != official {ref_counts}"
    assert counts == MCTF.schedule(model, MCTF.params_for(1.0, model, over))
    assert counts[-1] < counts[0] or over.get("one_step_ahead") == 0
    assert len(groups) == len(ref_groups) and ref_groups
    for i, (ours, theirs) in enumerate(zip(groups, ref_groups, strict=True)):
        assert torch.equal(ours, theirs), f"fusion {i}: other merged groups"
    delta = (got - ref).abs().max().item()
    assert delta <= 1e-5, f"max |logit difference| {delta:.2e}"
    return delta, counts


@pytest.mark.parametrize("setting", list(SETTINGS))
@pytest.mark.parametrize("which", ["deit-s", "demo"])
def test_mctf_equals_the_official_fusion(which: str, setting: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Logits within 1e-5, identical token counts per block, identical merged groups per fusion."""
    model = _deit_s_small() if which == "deit-s" else load_demo_model()
    x = model_input(model, batch=3, seed=1)
    delta, counts = _compare(model, x, _setting(setting, model), monkeypatch)
    print(f"mctf {which} {setting}: max |logit delta| {delta:.2e}, tokens per block {counts}")


def test_mctf_official_counts_on_the_small_deit_s(monkeypatch: pytest.MonkeyPatch) -> None:
    """The official r rule: 16 per block, then T - 10 once fewer than 10 would remain, then none."""
    model = _deit_s_small()
    assert MCTF.schedule(model, MCTF.params_for(1.0, model, {"r": 16})) == [50, 50, 34, 18] + [10] * 8
    demo = load_demo_model()
    assert MCTF.schedule(demo, MCTF.params_for(1.0, demo, {"r": 16})) == [65, 65, 49, 33, 17, 10, 10, 10]


@pytest.mark.slow
def test_mctf_equals_the_official_fusion_on_full_deit_s(monkeypatch: pytest.MonkeyPatch) -> None:
    """DeiT-S at 224x224 (196 image tokens), random weights, the official r=16 in blocks 1-11."""
    torch.manual_seed(0)
    model = timm.create_model("deit_small_patch16_224", pretrained=False).eval()
    x = model_input(model, batch=2, seed=1)
    delta, counts = _compare(model, x, {"r": 16}, monkeypatch)
    assert counts == [197, 197, 181, 165, 149, 133, 117, 101, 85, 69, 53, 37]
    print(f"mctf deit-s 224 r=16: max |logit delta| {delta:.2e}")


def test_mctf_counter_equals_its_closed_form() -> None:
    """The GMACs counter = stem and head + MCTF's closed form of the blocks, exactly, per setting."""
    model = load_demo_model()
    x = model_input(model, batch=1, seed=0)
    dense = count_macs(model, x)
    depth, dim = len(model.blocks), model.embed_dim

    def blocks_and_norm(params: Any) -> int:  # the final norm runs on the tokens leaving the blocks
        _, fused = mctf_mod.mctf_schedule(65, 1, depth, params)
        return mctf_mod.mctf_macs(model, params) + 5 * dim * fused[-1]

    stem_head = dense - blocks_and_norm(MCTF.params_for(1.0, model, {"r": 0}))
    for name in SETTINGS:
        params = MCTF.params_for(1.0, model, _setting(name, model))
        with MCTF.apply(model, params):
            counted = count_macs(model, x)
        assert counted == stem_head + blocks_and_norm(params), name


def test_mctf_random_selection_keeps_counts_and_sizes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Random scores: the scored counts, sizes adding up to the patches, other merged groups."""
    model = _deit_s_small()
    x = model_input(model, batch=2, seed=3)
    scored, counts, groups = _vitbench(model, x, {"r": 16}, monkeypatch)
    rand, rcounts, rgroups = _vitbench(model, x, {"r": 16}, monkeypatch, selection="random")
    assert rcounts == counts
    assert any(not torch.equal(a, b) for a, b in zip(groups, rgroups, strict=True))
    assert all(bool((g.sum(dim=1) == 1).all()) for g in rgroups)  # every patch in exactly one group
    assert not torch.allclose(scored, rand)


def test_mctf_prefix_tokens_never_fuse_in_a_distilled_deit() -> None:
    """Both prefix tokens of a distilled DeiT keep size 1 and stay first (official: CLS only)."""
    torch.manual_seed(0)
    model = timm.create_model(
        "deit_tiny_distilled_patch16_224", pretrained=False, img_size=64, depth=4
    ).eval()
    x = model_input(model, batch=2, seed=0)
    params = MCTF.params_for(1.0, model, {"r": 4})
    with torch.inference_mode(), MCTF.apply(model, params) as handle:
        model(x)
        sizes = handle.token_sizes
    assert sizes is not None and torch.equal(sizes[:, :2], torch.ones_like(sizes[:, :2]))
    assert torch.equal(sizes[:, 2:].sum(dim=(1, 2)), torch.full((2,), 16.0))


def test_mctf_keep_ratio_maps_to_evit_gmacs() -> None:
    """The keep ratio maps to the r closest to EViT's GMACs; keep 1.0 is r=0 (the dense model)."""
    model = timm.create_model("deit_small_patch16_224", pretrained=False)
    rs = [MCTF.map_keep_ratio(k, model)["r"] for k in (1.0, 0.9, 0.7, 0.5, 0.3)]
    assert rs == [0, 5, 12, 19, 26]


def test_mctf_refuses_bad_settings() -> None:
    """Bad parameters and impossible layers are refused in one line naming the fix."""
    model = load_demo_model()
    for bad in ({"r": 2.5}, {"r": -1}, {"fusion": "median"}, {"one_step_ahead": 3}, {"tau_info": -1}):
        with pytest.raises(VitbenchError) as err:
            MCTF.params_for(1.0, model, bad)
        assert "\n" not in str(err.value)
    params = MCTF.params_for(1.0, model, {"layers": [8]})
    with pytest.raises(VitbenchError, match="layers \\[8\\] do not exist"):
        MCTF.apply(model, params)


def test_mctf_published_gmacs_match_at_the_papers_two_decimals() -> None:
    """Every published row of the card (README: 0.71, 0.75, 2.60, 2.76) as flops --paper counts it."""
    from vitbench.measure import count_gmacs
    from vitbench.report.cards import cards_dir, load_card, paper_round

    card = load_card(cards_dir() / "mctf.yaml")
    assert card["gmacs_rounding"] == "round2" and len(card["published"]) == 4
    models: dict[str, Any] = {}
    for row in card["published"]:
        arch = row["model"]
        model = models.setdefault(arch, timm.create_model(arch, pretrained=False).eval())
        params = MCTF.params_for(1.0, model, row["params"])
        with MCTF.apply(model, params):
            g = count_gmacs(model)
        assert paper_round(g, "round2") == row["gmacs"], f"{arch} {row['params']}: {g:.4f}"
