"""LFE's kept-token order: the official selector's order, re-derived here, and its effect on scores.

The official selector (Daner-Wang/VTC-LFC @ cfea7ee, ``models/deit/deit.py``) keeps its tokens
with ``torch.topk(scores, k, sorted=False)`` and gathers them in the order top-k returns. On the
CUDA devices the authors ran, top-k is a radix select that writes the indices whose value is
above the k-th largest value in index order, then the indices equal to it in index order (the
first ones seen) until k are written. LFE's FFT runs over the token sequence, so this order sets
the scores of every later pruning stage. The reference below is computed from those definitions
in float64 numpy (its own attention, FFT filter and ordering), not from vitbench's functions.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest
import torch

import vitbench.methods.lfe as lfe
import vitbench.methods.lfeblock as lfeblock
from vitbench.core.errors import VitbenchError
from vitbench.core.models import create_model, data_config
from vitbench.data import load_dataset
from vitbench.data.prep import prepare_images
from vitbench.data.samples import to_tensor
from vitbench.methods import METHODS
from vitbench.methods.lfeblock import TOKEN_ORDERS, kept_indices


def official_order(scores: np.ndarray, k: int) -> list[int]:
    """The documented output order of CUDA ``topk(sorted=False)`` for one row of scores."""
    kth = np.sort(scores)[::-1][k - 1]
    above = [i for i, s in enumerate(scores) if s > kth]
    ties = [i for i, s in enumerate(scores) if s == kth]
    return above + ties[: k - len(above)]


def reference_scores(tokens: np.ndarray, probs: np.ndarray, cutoff: float = 0.15) -> np.ndarray:
    """LFE x head-weighted attention of the image tokens, from the paper's definition, float64.

    Args:
        tokens: [B, N, C] residual stream after the attention add (CLS first).
        probs: [B, H, N, N] softmax attention of the block.
    """
    a = probs
    cls_weight = a[:, :, 1:, 0].mean(-1)  # [B, H]: how much the image tokens attend to CLS
    cls_term = (a[:, :, 0, 1:] * cls_weight[..., None]).mean(1)
    img_term = (a[:, :, 1:, 1:].mean(2) * a[:, :, 0, 0][..., None]).mean(1)
    x = tokens[:, 1:]
    n = x.shape[1]
    k = np.arange(n)
    sigma = n * cutoff / 2
    gain = 1 - np.exp(-((k - (n - 1) / 2) ** 2) / (2 * sigma**2))  # notch at n/2 of the unshifted layout
    low = np.abs(np.fft.ifft(np.fft.fft(x, axis=1) * gain[None, :, None], axis=1)).sum(-1)
    energy = low / np.abs(x).sum(-1).mean(-1, keepdims=True)
    return energy * (cls_term + img_term)


def _attention(blk: Any, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Timm attention of a plain ViT block in float64: (output before the residual, probs)."""
    attn = blk.attn
    w = attn.qkv.weight.detach().double().numpy()
    bias = attn.qkv.bias.detach().double().numpy()
    b, n, c = h.shape
    heads = attn.num_heads
    qkv = (h @ w.T + bias).reshape(b, n, 3, heads, c // heads).transpose(2, 0, 3, 1, 4)
    logits = qkv[0] @ qkv[1].transpose(0, 1, 3, 2) * attn.scale
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    out = (probs @ qkv[2]).transpose(0, 2, 1, 3).reshape(b, n, c)
    proj = attn.proj
    return out @ proj.weight.detach().double().numpy().T + proj.bias.detach().double().numpy(), probs


def _module64(mod: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    """A float32 module of the model run in float64 on ``x`` (a double copy, same weights)."""
    with torch.no_grad():
        return copy.deepcopy(mod).double()(torch.from_numpy(x)).numpy()


def reference_stages(
    model: Any, images: torch.Tensor, targets: dict[int, int], order: str
) -> list[tuple[np.ndarray, list[list[int]]]]:
    """Scores and kept original patch ids at every pruning block, float64, kept tokens in ``order``."""
    with torch.no_grad():
        t = model._pos_embed(model.patch_embed(images)).double().numpy()
    b = t.shape[0]
    ids = [list(range(t.shape[1] - 1)) for _ in range(b)]  # original patch id of each image token
    out = []
    for i, blk in enumerate(model.blocks):
        h = _module64(blk.norm1, t)
        att, probs = _attention(blk, h)
        t = t + att
        if i in targets:
            scores = reference_scores(t, probs)
            keep = targets[i]
            rows = [official_order(s, keep) for s in scores]
            if order == "spatial":
                rows = [sorted(r) for r in rows]
            t = np.stack([np.concatenate([t[j, :1], t[j, 1:][rows[j]]]) for j in range(b)])
            ids = [[ids[j][r] for r in rows[j]] for j in range(b)]
            out.append((scores, [list(x) for x in ids]))
        t = t + _module64(blk.mlp, _module64(blk.norm2, t))
    return out


# ------------------------------------------------------------------------------- ordering rule


@pytest.mark.parametrize("seed", range(4))
def test_kept_indices_equal_rederived_official_order(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    # coarse values force ties at the k-th score; fine ones are distinct
    scores = torch.cat([torch.randint(0, 6, (3, 40), generator=g).float(), torch.rand(3, 40, generator=g)])
    for k in (1, 7, 20, 39):
        got = kept_indices(scores, k, "official")
        want = [official_order(row.numpy(), k) for row in scores]
        assert got.tolist() == want
        spatial = kept_indices(scores, k, "spatial").tolist()
        assert spatial == [sorted(r) for r in spatial]
    distinct = scores[3:]
    for k in (5, 20):
        off, sp = kept_indices(distinct, k, "official"), kept_indices(distinct, k, "spatial")
        assert [set(r) for r in off.tolist()] == [set(r) for r in sp.tolist()]  # same set, other order
        kth = distinct.topk(k, dim=1).indices[:, -1]
        assert off[:, -1].tolist() == kth.tolist()  # the k-th ranked token last
        assert all(r[:-1] == sorted(r[:-1]) for r in off.tolist())  # the others in index order


def test_token_order_is_a_validated_parameter() -> None:
    assert TOKEN_ORDERS == ("official", "spatial")
    model = create_model("vitbench_demo_vit", "random")
    for name in ("lfe", "vtc-lfc"):
        cls = METHODS.get(name)
        assert cls.defaults()["token_order"] == "official"
        assert cls.version == 2  # the default order changed the numbers of version 1
        unknown = "token_order 'sorted' is unknown; use one of: official, spatial"
        with pytest.raises(VitbenchError, match=unknown):
            cls.params_for(0.5, model, {"token_order": "sorted"})
        assert cls.params_for(0.5, model, {"token_order": "spatial"}).token_order == "spatial"
    with pytest.raises(ValueError, match="token_order"):
        kept_indices(torch.zeros(1, 4), 2, "random")


# ------------------------------------------------------------------------------- second stage


@pytest.fixture(scope="module")
def demo() -> tuple[Any, torch.Tensor]:
    model = create_model("vitbench_demo_vit", "demo").eval()
    data = load_dataset("mnist-demo", split="test", limit=48)
    cfg = data_config(model)
    return model, to_tensor(prepare_images(data.images, cfg), cfg)


def _run_lfe(model: Any, images: torch.Tensor, order: str, monkeypatch: Any) -> tuple[list, list]:
    """vitbench's LFE at keep 0.5: the scores and kept indices of every pruning block."""
    scores, kept = [], []
    real_scores, real_kept = lfeblock.lfe_scores, lfeblock.kept_indices

    def spy_scores(*a: Any, **k: Any) -> torch.Tensor:
        scores.append(real_scores(*a, **k))
        return scores[-1]

    def spy_kept(*a: Any, **k: Any) -> torch.Tensor:
        kept.append(real_kept(*a, **k))
        return kept[-1]

    monkeypatch.setattr(lfeblock, "lfe_scores", spy_scores)
    monkeypatch.setattr(lfeblock, "kept_indices", spy_kept)
    cls = METHODS.get("lfe")
    params = cls.params_for(0.5, model, {"token_order": order})
    with torch.no_grad(), cls.apply(model, params):
        model(images)
    monkeypatch.undo()
    return scores, kept


@pytest.mark.parametrize("order", TOKEN_ORDERS)
def test_second_stage_scores_equal_independent_recomputation(demo, order: str, monkeypatch) -> None:
    """Scores at the first and second pruning stage and the kept tokens equal the float64 reference.

    In float64 (the scores themselves are computed in float32) every score is within 1e-6
    relative; in float32 (as benchmarks run) the largest difference is within 1e-6 of the
    image's largest score. Kept tokens: the same original patches in the same order.
    """
    model, images = demo
    targets = lfe.block_targets(model, METHODS.get("lfe").params_for(0.5, model))
    stages = {i: t for i, t in enumerate(targets) if t >= 0}
    assert stages == {2: 32, 4: 16, 6: 8}  # the stage schedule of the 64-token demo at keep 0.5
    ref = reference_stages(model, images, stages, order)
    model64 = copy.deepcopy(model).double()
    for m, x, elementwise in ((model64, images.double(), True), (model, images, False)):
        scores, kept = _run_lfe(m, x, order, monkeypatch)
        ids = kept[0]
        for stage in range(2):
            want_scores, want_ids = ref[stage]
            diff = np.abs(scores[stage].double().numpy() - want_scores)
            scale = np.abs(want_scores) if elementwise else np.abs(want_scores).max(1, keepdims=True)
            rel = diff / scale
            assert rel.max() <= 1e-6, (stage, x.dtype, rel.max())
            if stage:
                ids = ids.gather(1, kept[stage])  # original patch ids of the tokens kept at stage 2
            assert ids.tolist() == want_ids  # identical kept tokens, in the same order
    # the order matters: the other order's independent recomputation gives other second-stage scores
    other = reference_stages(model, images, stages, "spatial" if order == "official" else "official")
    assert np.array_equal(other[0][0], ref[0][0])  # the first stage does not depend on the order
    ratio = other[1][0] / ref[1][0]
    assert np.abs(np.log(ratio)).max() > np.log(2)
