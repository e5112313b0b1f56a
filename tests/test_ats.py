"""ATS against the official code (adaptivetokensampling/ATS @ 9271257), re-derived here.

The reference below writes out the official DeiT-S forward step by step from
``libs/models/transformers/vit.py`` (``forward_features``: an all-ones policy passed to every
block), ``transformer_block.py`` (``Block`` and ``Attention.softmax_with_policy``) and
``ats_block.py`` (``AdaptiveTokenSampler``: ``score_assignment_step``, ``create_ys``,
``inverse_transform_sampling``, ``get_unique_indices`` and the ``drop_tokens`` packing), on a timm
DeiT's own weights. It runs each image alone (batch 1), which is the result vitbench gives every
image of any batch; vitbench runs the images as one padded batch.
"""

from __future__ import annotations

from typing import Any

import pytest
import timm
import torch
import torch.nn.functional as F

from vbtest import model_input
from vitbench.core.demo import load_demo_model
from vitbench.core.errors import VitbenchError
from vitbench.measure import count_gmacs
from vitbench.measure.gmacs import count_macs, vit_dims
from vitbench.methods import METHODS
from vitbench.methods import ats as ats_mod

ATS: Any = METHODS.get("ats")


def _ref_softmax(attn: torch.Tensor, policy: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """``softmax_with_policy``: padded keys kept on the diagonal only, eps added."""
    b, h, n, _ = attn.shape
    keep = policy.reshape(b, 1, 1, n)
    keep = keep + (1.0 - keep) * torch.eye(n).view(1, 1, n, n)
    top = attn.max(dim=-1, keepdim=True)[0]
    e = (attn - top).to(torch.float32).exp() * keep.to(torch.float32)
    return ((e + eps / n) / (e.sum(dim=-1, keepdim=True) + eps)).type_as(top)


def _ref_qkv(blk: Any, x: torch.Tensor, policy: torch.Tensor) -> tuple[torch.Tensor, ...]:
    b, n, c = x.shape
    heads = blk.attn.num_heads
    qkv = blk.attn.qkv(blk.norm1(x)).reshape(b, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
    return tuple(qkv * policy.unsqueeze(0).unsqueeze(2))


def _ref_block(blk: Any, x: torch.Tensor, policy: torch.Tensor) -> torch.Tensor:
    """The official ``Block`` with a policy (every non-ATS block)."""
    b, n, c = x.shape
    heads = blk.attn.num_heads
    qkv = blk.attn.qkv(blk.norm1(x)).reshape(b, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    attn = _ref_softmax((q @ k.transpose(-2, -1)) * blk.attn.scale, policy)
    x = x + blk.attn.proj((attn @ v).transpose(1, 2).reshape(b, n, c))
    x = x * policy
    return (x + blk.mlp(blk.norm2(x))) * policy


def _ref_ys(cdf: torch.Tensor, n_ref: int) -> torch.Tensor:
    """``create_ys``: ``n_ref - 1`` points from the smallest non-zero CDF value to 1."""
    b = cdf.shape[0]
    ys = torch.linspace(0, 1.0, n_ref - 1).unsqueeze(0).repeat(b, 1)
    start = torch.min(cdf + (cdf == 0).float() * 1e8, dim=1)[0].unsqueeze(-1).expand_as(ys)
    steps = torch.arange(0, n_ref - 1, dtype=torch.float32).unsqueeze(0).expand_as(start)
    return start + (((ys * (n_ref - 2)) - start * steps) / (n_ref - 2))


def _ref_unique(indices: torch.Tensor, max_value: int) -> torch.Tensor:
    """``get_unique_indices``: duplicates (and a largest index equal to 1) become ``max_value``."""
    ordered = torch.sort(indices, dim=1)[0]
    nxt = F.pad(ordered[:, 1:], (0, 1), value=1.0)
    out = torch.where((nxt - ordered) == 0, max_value * torch.ones_like(indices), ordered)
    return torch.sort(out, dim=1)[0]


def _ref_ats_block(
    blk: Any, x: torch.Tensor, policy: torch.Tensor, ids: torch.Tensor, n_tokens: int, n_ref: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``ATSBlock`` with ``drop_tokens=True``; ``ids`` [B, N] follows the tokens (patch index + 1, CLS 0)."""
    b, n, c = x.shape
    heads = blk.attn.num_heads
    n_tokens = min(n_tokens, n)
    n_tokens = max(n_tokens, 8)
    n_tokens = min(n_tokens, n)
    q, k, v = _ref_qkv(blk, x, policy)
    attn = _ref_softmax((q @ k.transpose(-2, -1)) * blk.attn.scale, policy)
    # score assignment
    v_norm = torch.linalg.norm(v.transpose(1, 2).reshape(b, n, c), ord=2, dim=2)
    score = (attn[:, :, 0].sum(dim=1) * v_norm)[:, 1:]
    score = score / score.sum(dim=1, keepdim=True)
    sorted_scores, sorted_idx = torch.sort(score, descending=False, dim=1)
    # inverse transform sampling
    cdf = torch.cumsum(sorted_scores, dim=1)
    cdf = (cdf - cdf.min(dim=1)[0].unsqueeze(1)) / ((cdf.max(dim=1)[0] - cdf.min(dim=1)[0]) / 1.0).unsqueeze(
        1
    )
    ys = _ref_ys(cdf, n_ref).unsqueeze(2)
    shift = ys.shape[1] - (n - 1)
    grid = torch.Tensor.expand(ys, (b, ys.shape[1], ys.shape[1]))
    pick = torch.min(torch.abs(grid - F.pad(cdf.unsqueeze(1), (shift, 0))), dim=2)[1] - shift
    attn_sorted = torch.gather(
        attn[:, :, 1:], 2, sorted_idx.unsqueeze(1).unsqueeze(-1).expand(b, heads, n - 1, n)
    )
    attn_sorted = F.pad(attn_sorted, (0, 0, 0, 1), value=0.0)
    x_sorted = F.pad(torch.gather(x[:, 1:], 1, sorted_idx.unsqueeze(-1).expand(b, n - 1, c)), (0, 0, 0, 1))
    ids_sorted = F.pad(torch.gather(ids[:, 1:], 1, sorted_idx), (0, 1), value=-1)
    unique = _ref_unique(pick, n - 1)[:, : n - 1]
    attn_rows = torch.gather(
        attn_sorted, 2, unique.unsqueeze(1).unsqueeze(3).expand(b, heads, n_tokens - 1, n)
    )
    x_sel = torch.gather(x_sorted, 1, unique.unsqueeze(2).expand(b, n_tokens - 1, c))
    ids_sel = torch.gather(ids_sorted, 1, unique)
    attn_rows = torch.cat([attn[:, :, 0:1], attn_rows], dim=2)
    x_sel = torch.cat([x[:, 0:1], x_sel], dim=1)
    ids_sel = torch.cat([ids[:, 0:1], ids_sel], dim=1)
    policy = F.pad((unique != (n - 1)).unsqueeze(-1).float(), (0, 0, 1, 0), value=1.0)
    out = (attn_rows @ v).transpose(1, 2).reshape(b, attn_rows.shape[2], c)
    # drop_tokens: pack the kept rows (they come first) to the batch's largest count
    size = int(policy.sum(1).max())
    out, x_sel, ids_sel, policy = out[:, :size], x_sel[:, :size], ids_sel[:, :size], policy[:, :size]
    x = x_sel + blk.attn.proj(out) * policy
    x = x * policy
    x = (x + blk.mlp(blk.norm2(x))) * policy
    return x, policy, ids_sel


def _ref_forward(
    model: Any, x: torch.Tensor, blocks: set[int], samples: int
) -> tuple[torch.Tensor, list[int], list[set[int]]]:
    """Official forward: (logits, tokens entering each block, kept patches per ATS block of image 0)."""
    h = model._pos_embed(model.patch_embed(x))
    b, n, _ = h.shape
    policy = torch.ones(b, n, 1)
    ids = torch.arange(n).unsqueeze(0).expand(b, -1)
    counts, kept = [], []
    for i, blk in enumerate(model.blocks):
        counts.append(int(policy.sum(1).max()))
        if i in blocks:  # NUM_TOKENS = n_ref_tokens = K + 1 (K = 196, the official 197, on DeiT-S)
            h, policy, ids = _ref_ats_block(blk, h, policy, ids, samples + 1, samples + 1)
            kept.append({int(j) - 1 for j, m in zip(ids[0], policy[0, :, 0]) if m > 0 and j > 0})
        else:
            h = _ref_block(blk, h, policy)
    return model.forward_head(model.norm(h)), counts, kept


def _vitbench(model: Any, x: torch.Tensor, p: Any, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, ...]:
    """vitbench's logits for the batch, per-image counts, and kept patches per ATS block per image."""
    kept: list[list[set[int]]] = [[] for _ in range(x.shape[0])]
    real = ats_mod.kept_index

    def spy(order: torch.Tensor, picked: torch.Tensor, prefix: int) -> tuple[torch.Tensor, torch.Tensor]:
        index, mask = real(order, picked, prefix)
        pos = spy_state["pos"]
        patches = pos.gather(1, (index[:, prefix:] - prefix).clamp(min=0))
        for j in range(index.shape[0]):
            kept[j].append({int(t) for t, m in zip(patches[j], mask[j, prefix:]) if m})
        return index, mask

    spy_state: dict[str, torch.Tensor] = {}
    monkeypatch.setattr(ats_mod, "kept_index", spy)
    with torch.inference_mode(), ATS.apply(model, p) as h:
        orig = ats_mod.sample_tokens

        def sample(*a: Any) -> Any:
            spy_state["pos"] = h.state.extra["run"]["pos"]
            return orig(*a)

        monkeypatch.setattr(ats_mod, "sample_tokens", sample)
        logits = model(x)
        costs = h.image_costs()
    return logits, costs, kept


def _deit_s_tiny() -> Any:
    """DeiT-S (width 384, 6 heads, 12 blocks) at 112x112: 49 image tokens; sharpened random qkv."""
    torch.manual_seed(0)
    model = timm.create_model("deit_small_patch16_224", pretrained=False, img_size=112).eval()
    with torch.no_grad():
        for blk in model.blocks:
            blk.attn.qkv.weight.mul_(4.0)
    return model


@pytest.mark.parametrize("keep", [1.0, 0.5])
@pytest.mark.parametrize("which", ["deit-s", "demo"])
def test_ats_equals_the_official_sampling(which: str, keep: float, monkeypatch: pytest.MonkeyPatch) -> None:
    """Logits within 1e-5 of the official code at batch 1; same counts and kept patches per image, block."""
    model = _deit_s_tiny() if which == "deit-s" else load_demo_model()
    x = model_input(model, batch=4, seed=1)
    p = ATS.params_for(keep, model)
    k = ats_mod.samples_of(p, model.patch_embed.num_patches)
    blocks = set(ats_mod.ats_blocks(len(model.blocks), p.blocks))
    got, costs, kept = _vitbench(model, x, p, monkeypatch)
    bound = ATS.schedule(model, p)
    worst = 0.0
    with torch.inference_mode():
        for j in range(x.shape[0]):
            ref, ref_counts, ref_kept = _ref_forward(model, x[j : j + 1], blocks, k)
            assert costs.tokens[j].tolist() == ref_counts, f"image {j}: other token counts"
            assert kept[j] == ref_kept, f"image {j}: other kept tokens"
            assert all(c <= u for c, u in zip(ref_counts, bound))
            worst = max(worst, (got[j] - ref[0]).abs().max().item())
    assert worst <= 1e-5
    assert len({tuple(t) for t in costs.tokens.tolist()}) > 1, "counts should vary per image"
    assert int(costs.tokens[:, -1].max()) < int(costs.tokens[0, 0])


@pytest.mark.slow
def test_ats_equals_the_official_sampling_on_full_deit_s(monkeypatch: pytest.MonkeyPatch) -> None:
    """DeiT-S at 224x224 (196 image tokens), random weights, the official setting (K = 196, blocks 3-11)."""
    torch.manual_seed(0)
    model = timm.create_model("deit_small_patch16_224", pretrained=False).eval()
    x = model_input(model, batch=2, seed=1)
    p = ATS.params_for(1.0, model)
    assert ats_mod.samples_of(p, 196) == 196 and ats_mod.ats_blocks(12, p.blocks) == set(range(3, 12))
    got, costs, kept = _vitbench(model, x, p, monkeypatch)
    with torch.inference_mode():
        for j in range(2):
            ref, ref_counts, ref_kept = _ref_forward(model, x[j : j + 1], set(range(3, 12)), 196)
            assert costs.tokens[j].tolist() == ref_counts and kept[j] == ref_kept
            assert (got[j] - ref[0]).abs().max().item() <= 1e-5


def test_ats_batch_one_and_batch_many_agree() -> None:
    """A batch gives every image its batch-1 prediction and counts (padding never changes a result)."""
    model = load_demo_model()
    x = model_input(model, batch=9, seed=3)
    for selection in ("scored", "random"):
        p = ATS.params_for(0.7, model)
        with torch.inference_mode(), ATS.apply(model, p, selection, seed=0) as h:
            ids = torch.arange(9)
            h.set_sample_ids(ids)
            batch = model(x)
            counts = h.image_costs()
            single = []
            for j in range(9):
                h.set_sample_ids(ids[j : j + 1])
                single.append(model(x[j : j + 1]))
            alone = h.image_costs()
        assert torch.equal(batch.argmax(1), torch.cat(single).argmax(1))
        assert (batch - torch.cat(single)).abs().max().item() <= 1e-5
        assert torch.equal(counts.tokens, alone.tokens) and torch.equal(counts.sample_ids, alone.sample_ids)


def test_ats_random_selection_keeps_the_scored_counts_of_each_image() -> None:
    """Random selection: the same tokens per block per image as scored, other tokens, same GMACs."""
    model = load_demo_model()
    x = model_input(model, batch=6, seed=4)
    p = ATS.params_for(0.7, model)
    out = {}
    for selection in ("scored", "random"):
        with torch.inference_mode(), ATS.apply(model, p, selection, seed=0) as h:
            logits = model(x)
            costs = h.image_costs()
            gmacs = count_gmacs(model, (3, 32, 32))
        out[selection] = (logits, costs, gmacs)
    (ls, cs, gs), (lr, cr, gr) = out["scored"], out["random"]
    assert torch.equal(cs.tokens, cr.tokens) and torch.equal(cs.macs, cr.macs)
    assert gs == gr  # the scored pass that fixes the counts is not counted
    assert not torch.allclose(ls, lr)


@pytest.mark.parametrize("selection", ["scored", "random"])
def test_ats_image_macs_equal_the_counter_at_batch_one(selection: str) -> None:
    """The closed-form block MACs per image plus stem and head equal the counter on that image alone."""
    model = load_demo_model()
    p = ATS.params_for(0.6, model)
    dense = count_macs(model, model_input(model, batch=1, seed=0))
    dim, attn_dim, hidden, depth = vit_dims(model)
    n0 = torch.tensor(model.patch_embed.num_patches + 1)
    stem_head = dense - depth * int(ats_mod.block_macs(n0, n0, dim, attn_dim, hidden)) - 5 * dim * int(n0)
    seen = set()
    with ATS.apply(model, p, selection) as h:
        for seed in range(4):
            x = model_input(model, batch=1, seed=seed)
            counted = count_macs(model, x)
            c = h.image_costs()
            assert c is not None and c.macs.shape == (1,)
            assert counted == stem_head + int(c.macs[0])
            seen.add(tuple(c.tokens[0].tolist()))
    assert len(seen) > 1  # different inputs, different counts


def test_ats_refusals_and_params() -> None:
    model = load_demo_model()
    with pytest.raises(VitbenchError, match="samples 3 is below 7"):
        ATS.params_for(0.5, model, {"samples": 3})
    with pytest.raises(VitbenchError, match="beyond the model's 8 blocks"):
        ATS.schedule(model, ATS.params_for(0.5, model, {"blocks": "3,9"}))
    assert ATS.params_for(1.0, model).samples == 64 and ATS.params_for(0.05, model).samples == 7
    gap = timm.create_model("vit_small_patch16_224", pretrained=False, global_pool="avg", img_size=64)
    assert "class-token" in (ATS.supported(gap) or "")
    assert count_gmacs(model, (3, 32, 32)) > 0


def test_adaptive_records_keep_the_per_image_distribution() -> None:
    """CellCosts: mean GMACs over the evaluated images, their percentiles, per-block token stats."""
    from types import SimpleNamespace

    import numpy as np
    import pandas as pd

    from vitbench.core.specs import ThroughputSpec
    from vitbench.harness.costs import CellCosts
    from vitbench.methods.base import NoParams
    from vitbench.report.tables import adaptive_note
    from vitbench.store.records import RECORD_FIELDS

    model = load_demo_model()
    cfg = {"input_size": (3, 32, 32)}
    costs = CellCosts(ThroughputSpec(enabled=False), "cpu", lambda spec: 1)

    def cell(name: str) -> Any:
        return SimpleNamespace(model="demo", method=SimpleNamespace(name=name), selection="scored")

    p = ATS.params_for(0.7, model)
    rows = []
    with torch.inference_mode(), ATS.apply(model, p) as h:
        for seed, n in ((1, 12), (2, 7)):  # two cells of one setting (e.g. two noise levels)
            h.set_sample_ids(torch.arange(n) + 100 * seed)
            model(model_input(model, batch=n, seed=seed))
            _, na, nm = (torch.cat(parts) for parts in zip(*h.state.images))
            macs = ats_mod.block_macs(na, nm, *h.state.dims).sum(dim=1) + h.state.final_norm * nm[:, -1]
            rows.append((costs.of(cell("ats"), model, h, p, cfg), na, macs))
        h.image_costs()
        anchor_gmacs = count_gmacs(model, (3, 32, 32))
        anchor = h.image_costs()
    assert anchor is not None
    for out, na, macs in rows:
        assert set(out) <= set(RECORD_FIELDS)
        per_image = anchor_gmacs + (macs.double() - float(anchor.macs[0])) / 1e9
        assert out["gmacs"] == pytest.approx(float(per_image.mean()), rel=1e-12)
        assert out["gmacs_p50"] == pytest.approx(float(np.percentile(per_image.numpy(), 50)), rel=1e-12)
        assert (
            out["gmacs_p10"] <= out["gmacs_p50"] <= out["gmacs_p90"] and out["gmacs_p10"] < out["gmacs_p90"]
        )
        assert out["gmacs_images"] == na.shape[0]
        assert out["tokens_per_block"] == [round(float(t), 3) for t in na.double().mean(dim=0)]
        assert out["tokens_p90"] == [round(float(t), 3) for t in np.percentile(na.numpy(), 90, axis=0)]
    assert rows[0][0]["gmacs"] != rows[1][0]["gmacs"]  # per cell, not cached per setting
    with torch.inference_mode(), METHODS.get("dense").apply(model, NoParams()) as h:
        fixed = costs.of(cell("dense"), model, h, NoParams(), cfg)
    assert "gmacs_p50" not in fixed and isinstance(fixed["tokens_per_block"][0], int)
    frame = pd.DataFrame({"method": ["ats", "evit"], "gmacs_p50": [0.1, None]})
    assert adaptive_note(frame).startswith("ats: tokens per image vary, placed at the mean GMACs")
    assert adaptive_note(frame.iloc[1:]) == ""


def test_recount_leaves_adaptive_records_alone(tmp_path: Any) -> None:
    """Recount cannot rebuild a mean over images from one synthetic input: it refuses, one line."""
    from vitbench.harness.recount import _Builder

    builder = _Builder(None, tmp_path / "r.sqlite", lambda line: None)
    row = {
        "method": "ats",
        "gmacs_p50": 0.008,
        "params_json": "{}",
        "model": "vitbench_demo_vit",
        "selection": "scored",
    }
    with pytest.raises(VitbenchError, match="adaptive method need its images; rerun the cell"):
        builder.costs(row)
    gmacs, _ = builder.costs(
        {**row, "method": "evit", "gmacs_p50": float("nan"), "weights": "demo", "seed": 0}
    )
    assert gmacs > 0


def test_stores_without_the_adaptive_columns_gain_them_as_null(tmp_path: Any) -> None:
    import sqlite3

    from vitbench.store.records import RECORD_FIELDS, SCHEMA_VERSION
    from vitbench.store.results import ResultsStore, decode_json, load_results

    new = ("gmacs_p10", "gmacs_p50", "gmacs_p90", "gmacs_images", "tokens_p10", "tokens_p50", "tokens_p90")
    path = tmp_path / "old.sqlite"
    cols = ", ".join(
        f'"{n}" {k}' + (" UNIQUE" if n == "cell_key" else "")
        for n, k in RECORD_FIELDS.items()
        if n not in new
    )
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
        conn.execute(f"CREATE TABLE records ({cols})")
        conn.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        conn.execute("INSERT INTO records (cell_key, method, gmacs) VALUES ('old', 'evit', 4.25)")
    assert load_results(path)[list(new)].isna().all().all()
    with ResultsStore(path) as store:
        record = {"cell_key": "ats", "method": "ats", "gmacs": 2.5, "gmacs_images": 50}
        record.update(gmacs_p10=2.0, gmacs_p50=2.4, gmacs_p90=3.1, tokens_p10=[197, 150.5])
        store.write({**record, "tokens_p50": [197, 160], "tokens_p90": [197, 170]})
        df = store.frame().set_index("cell_key")
    assert decode_json(df.loc["ats", "tokens_p10"]) == [197, 150.5] and df.loc["ats", "gmacs_p90"] == 3.1
    assert df.loc["old", list(new)].isna().all()
