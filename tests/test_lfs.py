"""LFS / Taylor channel scores against brute force, structure search, physical slicing."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from test_lowpass_lfe import np_official_lowpass
from vbtest import make_model, model_input
from vitbench.core.errors import VitbenchError
from vitbench.measure import count_gmacs, count_params_m
from vitbench.methods import METHODS
from vitbench.methods.lfs import plan_of
from vitbench.methods.slimming.slim import dims_macs, model_dims
from vitbench.methods.slimming.taylor import (
    Criterion,
    SeededDropPath,
    add_drop_path,
    lfs_scores,
    prunable_channels,
    structure_block,
    threshold_for,
)


def _batches(model: torch.nn.Module, n: int = 2, b: int = 4, dtype=torch.float32):
    out = []
    for i in range(n):
        x = model_input(model, batch=b, seed=10 + i).to(dtype)
        y = torch.arange(b) % model.num_classes
        out.append((x, y))
    return out


def _tiny() -> torch.nn.Module:
    """A 2-block ViT (16x16 images, width 16, 2 heads, 5 classes) for finite differences."""
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    return VisionTransformer(
        img_size=16, patch_size=8, embed_dim=16, depth=2, num_heads=2, num_classes=5, mlp_ratio=2.0
    ).eval()


def test_lfs_scores_equal_brute_force_taylor() -> None:
    model = _tiny().double()
    batches = _batches(model, dtype=torch.float64)
    crit = Criterion(lowpass=True, cutoff=0.3, lfs_lambda=0.25, tau=2.0, num_samples=0)
    scores = lfs_scores(model, batches, crit, blocks=[1])[1]
    teacher_feats = [model.forward_features(x)[:, 0].detach() for x, _ in batches]
    low = [torch.from_numpy(np_official_lowpass(x.numpy(), 0.3)) for x, _ in batches]

    def mean_loss() -> float:
        total = 0.0
        with torch.no_grad():
            for (_, y), xl, tf in zip(batches, low, teacher_feats):
                feats = model.forward_features(xl)
                logits = model.forward_head(feats)
                s = feats[:, 0]
                kl = (F.softmax(tf / 2, 1) * (F.log_softmax(tf / 2, 1) - F.log_softmax(s / 2, 1))).sum()
                total += float(0.25 * F.cross_entropy(logits, y) + 0.75 * kl * 4 / s.numel())
        return total / len(batches)

    def row_score(weight: torch.nn.Parameter, row: int) -> float:
        eps, acc = 1e-6, 0.0
        for i in range(weight.shape[1]):
            old = float(weight.data[row, i])
            weight.data[row, i] = old + eps
            up = mean_loss()
            weight.data[row, i] = old - eps
            down = mean_loss()
            weight.data[row, i] = old
            acc += (old * (up - down) / (2 * eps)) ** 2
        return acc

    blk = model.blocks[1]
    c = blk.attn.num_heads * blk.attn.head_dim
    for q_row in (0, c - 1):
        want = row_score(blk.attn.qkv.weight, q_row) + row_score(blk.attn.qkv.weight, c + q_row)
        assert math.isclose(float(scores[0][q_row]), want, rel_tol=1e-5)
        assert math.isclose(float(scores[0][c + q_row]), want, rel_tol=1e-5)  # k shares it
    v_row = 2 * c + 3
    assert math.isclose(float(scores[0][v_row]), row_score(blk.attn.qkv.weight, v_row), rel_tol=1e-5)
    for f_row in (0, 7):
        assert math.isclose(float(scores[1][f_row]), row_score(blk.mlp.fc1.weight, f_row), rel_tol=1e-5)


def _independent_lfs_scores(model: torch.nn.Module, batches, cutoff: float, lam: float):
    """LFS scores from the definition: official-run filter (numpy), autograd, Taylor, q/k sharing.

    Per block: ([q | k | v] row scores with S_q + S_k shared, fc1 row scores); the student is the
    model itself (train mode = eval mode without dropout or drop-path), the teacher the same
    weights on the original images; the loss is lam * CE + (1 - lam) * KL of the final CLS feature.
    """
    names = [n for n, _ in model.named_parameters() if n.endswith(("attn.qkv.weight", "mlp.fc1.weight"))]
    params = dict(model.named_parameters())
    total = {n: torch.zeros_like(params[n]) for n in names}
    for x, y in batches:
        with torch.no_grad():
            t = model.forward_features(x)[:, 0]
        xl = torch.from_numpy(np_official_lowpass(x.double().numpy(), cutoff)).to(x.dtype)
        feats = model.forward_features(xl)
        s = feats[:, 0]
        kl = (F.softmax(t, 1) * (F.log_softmax(t, 1) - F.log_softmax(s, 1))).sum() / s.numel()
        loss = lam * F.cross_entropy(model.forward_head(feats), y) + (1 - lam) * kl
        for n, g in zip(names, torch.autograd.grad(loss, [params[n] for n in names])):
            total[n] += g
    out = {}
    for b, blk in enumerate(model.blocks):
        qn, fn = f"blocks.{b}.attn.qkv.weight", f"blocks.{b}.mlp.fc1.weight"
        sq = (params[qn].detach() * total[qn] / len(batches)).pow(2).sum(1)
        c = blk.attn.num_heads * blk.attn.head_dim
        qk = sq[:c] + sq[c : 2 * c]
        sf = (params[fn].detach() * total[fn] / len(batches)).pow(2).sum(1)
        out[b] = (torch.cat([qk, qk, sq[2 * c :]]), sf)
    return out


@pytest.mark.parametrize("keep", [0.7, 0.5])
def test_lfs_keep_sets_equal_independent_filter_and_taylor(keep: float) -> None:
    model = make_model("depth12").double()  # 32x32 images: the two filters differ
    batches = _batches(model, n=2, b=6, dtype=torch.float64)
    want = _independent_lfs_scores(model, batches, 0.1, 0.1)
    cls = METHODS.get("lfs")
    params = cls.params_for(keep, model, {"drop_path": 0.0, "num_samples": 0})
    assert params.lowpass == "official"
    got = lfs_scores(model, batches, params.criterion())
    for b in want:
        torch.testing.assert_close(got[b][0], want[b][0].float(), rtol=1e-6, atol=1e-30)
        torch.testing.assert_close(got[b][1], want[b][1].float(), rtol=1e-6, atol=1e-30)
    everything = torch.cat([torch.cat(v) for v in want.values()])
    thr = threshold_for(everything, round((1 - keep) * prunable_channels(model)))
    dims = model_dims(model).blocks
    plan = plan_of(cls.prune(model, params, batches))
    for b, (sq, sf) in want.items():
        h, dqk, dv, _m = dims[b]
        assert plan.blocks[b] == structure_block(sq, sf, thr, h, dqk, dv)
    assert plan.blocks != tuple(plan_of(cls.prune(model, cls.params_for(1.0, model), batches)).blocks)


def test_lfs_scores_change_with_the_filter() -> None:
    model = make_model("depth12")  # 32x32 images
    batches = _batches(model, n=2, b=6)
    cls = METHODS.get("lfs")
    scores = {}
    for filt in ("official", "symmetric"):
        params = cls.params_for(0.5, model, {"lowpass": filt, "drop_path": 0.0})
        per_block = lfs_scores(model, batches, params.criterion())
        scores[filt] = torch.cat([torch.cat(v) for v in per_block.values()])
    rel = (scores["official"] - scores["symmetric"]).norm() / scores["official"].norm()
    assert rel > 1e-3
    with pytest.raises(VitbenchError, match="official, symmetric"):
        cls.params_for(0.5, model, {"lowpass": "ideal"})


def test_seeded_drop_path_statistics_and_eval_identity() -> None:
    g = torch.Generator().manual_seed(0)
    dp = SeededDropPath(0.25, g).train()
    x = torch.ones(20000, 3)
    y = dp(x)
    dropped = (y[:, 0] == 0).float().mean()
    assert abs(float(dropped) - 0.25) < 0.015
    torch.testing.assert_close(y[y[:, 0] > 0], torch.full_like(y[y[:, 0] > 0], 1 / 0.75))
    assert (y == y[:, :1]).all()  # whole samples are dropped
    assert dp.eval()(x) is x
    model = make_model("depth12")
    add_drop_path(model, 0.1, 0)
    rates = [blk.drop_path1.rate for blk in model.blocks]
    assert rates == pytest.approx([0.1 * i / 11 for i in range(12)])
    assert [blk.drop_path2.rate for blk in model.blocks] == rates


def test_drop_path_scores_are_seeded_and_leave_the_global_rng_alone() -> None:
    model = make_model("depth12")
    batches = _batches(model, n=2, b=8)
    base = Criterion(num_samples=0, drop_path=0.1, seed=0)
    state = torch.get_rng_state()
    a = lfs_scores(model, batches, base)
    assert torch.equal(torch.get_rng_state(), state)
    b = lfs_scores(model, batches, base)
    c = lfs_scores(model, batches, Criterion(num_samples=0, drop_path=0.1, seed=1))
    d = lfs_scores(model, batches, Criterion(num_samples=0, drop_path=0.0))
    flat = [torch.cat([torch.cat(v) for v in s.values()]) for s in (a, b, c, d)]
    assert torch.equal(flat[0], flat[1])  # same seed: identical scores
    assert not torch.allclose(flat[0], flat[2], rtol=1e-3)  # another seed: other draws
    assert not torch.allclose(flat[0], flat[3], rtol=1e-3)  # drop-path changes the scores
    assert model.blocks[5].drop_path1.__class__.__name__ == "Identity"  # input model untouched
    cls = METHODS.get("lfs")
    assert cls.params_for(0.5, model).drop_path == 0.1  # the official --drop-path default
    with pytest.raises(VitbenchError, match="drop_path"):
        cls.params_for(0.5, model, {"drop_path": 1.0})


def test_taylor_is_plain_ce_on_original_images() -> None:
    model = make_model("depth12")
    batches = _batches(model)
    crit = Criterion(lowpass=False, lfs_lambda=1.0, num_samples=0)
    scores = lfs_scores(model, batches, crit, blocks=[0])[0]
    grads = []
    for x, y in batches:
        model.zero_grad()
        F.cross_entropy(model(x), y).backward()
        grads.append(model.blocks[0].mlp.fc1.weight.grad.clone())
    model.zero_grad()
    g = torch.stack(grads).mean(0)
    want = (model.blocks[0].mlp.fc1.weight.detach() * g).pow(2).sum(1)
    torch.testing.assert_close(scores[1], want, rtol=1e-4, atol=1e-12)


def _official_search(s, thr, heads, d):
    """Exhaustive search over head subsets, as the official get_mask_and_newcfg does."""
    c = heads * d
    s_q, s_k, s_v = s[:c].view(heads, d), s[c : 2 * c].view(heads, d), s[2 * c :].view(heads, d)
    m = s >= thr
    c_q, c_k, c_v = int(m[:c].sum()), int(m[c : 2 * c].sum()), int(m[2 * c :].sum())
    obj = float(s[m].sum())
    sq, sv = s_q.sort(1, descending=True).values, s_v.sort(1, descending=True).values
    sk = s_k.sort(1, descending=True).values
    best = (1e18, None)
    for h in range(math.ceil(max(c_q / d, c_k / d, c_v / d)), heads + 1):
        dq, dv = max(round((c_q + c_k) / h / 2), 1), max(round(c_v / h), 1)
        for combo in itertools.combinations(range(heads), h):
            kept = sum(float(sq[j, :dq].sum() + sk[j, :dq].sum() + sv[j, :dv].sum()) for j in combo)
            if obj - kept < best[0] - 1e-12:
                best = (obj - kept, (combo, dq, dv))
    return best[1]


@pytest.mark.parametrize("seed", range(6))
def test_structure_matches_exhaustive_search(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    heads, d = 4, 6
    base = torch.rand(heads * d, generator=g) ** 3
    s = torch.cat([base, base, torch.rand(heads * d, generator=g) ** 3])
    thr = float(torch.quantile(s, 0.2 + 0.1 * seed))
    plan = structure_block(s, torch.rand(10, generator=g), thr, heads, d, d)
    combo, dq, dv = _official_search(s, thr, heads, d)
    assert plan.heads == tuple(combo)
    assert plan.dims[1:3] == (dq, dv)
    for hd, qk in zip(plan.heads, plan.qk):  # top-dq q/k channels of that head
        assert set(qk) == set(torch.topk(base.view(heads, d)[hd], dq).indices.tolist())


def test_keep_one_gives_identical_logits_and_keep_low_slices_right_channels() -> None:
    model = make_model("depth12")
    x = model_input(model, batch=3)
    ref = model(x)
    for name in ("lfs", "taylor"):
        cls = METHODS.get(name)
        same = cls.prune(model, cls.params_for(1.0, model), _batches(model))
        torch.testing.assert_close(same(x), ref, rtol=0, atol=0)
        pruned = cls.prune(model, cls.params_for(0.5, model), _batches(model))
        assert model(x).equal(ref)  # input model untouched
        plan = plan_of(pruned)
        blk, pblk = model.blocks[0], pruned.blocks[0]
        bp = plan.blocks[0]
        h = blk.attn.num_heads
        dqk = blk.attn.head_dim
        rows = [hd * dqk + j for hd, sel in zip(bp.heads, bp.qk) for j in sel]
        rows += [h * dqk + r for r in rows]
        rows += [2 * h * dqk + hd * dqk + j for hd, sel in zip(bp.heads, bp.v) for j in sel]
        t = model._pos_embed(model.patch_embed(x))
        torch.testing.assert_close(pblk.attn.qkv(blk.norm1(t)), blk.attn.qkv(blk.norm1(t))[..., rows])
        torch.testing.assert_close(pblk.mlp.fc1(t), blk.mlp.fc1(t)[..., list(bp.mlp)])


def test_counted_gmacs_and_params_match_closed_form() -> None:
    model = make_model("depth12")
    cls = METHODS.get("lfs")
    pruned = cls.prune(model, cls.params_for(0.4, model), _batches(model))
    dims = model_dims(pruned)
    assert dims.blocks != model_dims(model).blocks
    size = pruned.patch_embed.img_size
    p = pruned.patch_embed.patch_size[0]
    want = dims_macs(dims, 17, 16, 3 * p * p, pruned.num_classes)
    assert count_gmacs(pruned, (3, *size)) * 1e9 == pytest.approx(want, rel=1e-9)
    e = dims.embed
    n_params = 3 * p * p * e + e + e + 17 * e + 2 * e + e * pruned.num_classes + pruned.num_classes
    for h, dqk, dv, m in dims.blocks:
        w = h * (2 * dqk + dv)
        n_params += 4 * e + e * w + w + h * dv * e + e + e * m + m + m * e + e
    assert count_params_m(pruned) * 1e6 == pytest.approx(n_params)


def test_bad_inputs() -> None:
    model = make_model("depth12")
    cls = METHODS.get("lfs")
    with pytest.raises(VitbenchError, match="lfs_lambda"):
        cls.prune(model, cls.params_for(0.5, model, {"lfs_lambda": -0.1}), _batches(model))
    with pytest.raises(VitbenchError, match="positive"):
        cls.prune(model, cls.params_for(0.5, model, {"cutoff": 0.0}), _batches(model))
    with pytest.raises(VitbenchError, match="empty"):
        cls.prune(model, cls.params_for(0.5, model), [])
    with pytest.raises(VitbenchError, match="calibration"):
        cls.prune(model, cls.params_for(0.5, model), None)
