"""ToMe and EViT on small hand-computed cases, keep-count rounding and the papers' GMACs."""

from __future__ import annotations

import math

import pytest
import timm
import torch

from vitbench.measure import count_gmacs
from vitbench.methods import METHODS, stagebase
from vitbench.methods import evit as evit_mod
from vitbench.methods.patching.patch import ForwardState
from vitbench.methods.tome import bipartite_soft_matching, merge_wavg

# tokens: t0 (CLS, in A), t1 (B), t2 (A), t3 (B), t4 (A)
METRIC = torch.tensor([[[1.0, 0.0], [1.0, 0.1], [0.1, 1.0], [0.0, 1.0], [1.0, 0.2]]])
X = torch.arange(5 * 3, dtype=torch.float32).reshape(1, 5, 3)


def test_tome_merges_most_similar_pair_first() -> None:
    # cos(t4, t1) = 0.99523 > cos(t2, t3) = 0.99504: with r=1 only t4 -> t1 merges
    merge = bipartite_soft_matching(METRIC, r=1, prefix=1)
    x, size = merge_wavg(merge, X, None)
    expected = torch.stack([X[0, 0], X[0, 2], (X[0, 1] + X[0, 4]) / 2, X[0, 3]])[None]
    torch.testing.assert_close(x, expected)
    assert size[0, :, 0].tolist() == [1.0, 1.0, 2.0, 1.0]


def test_tome_r2_and_size_weighting() -> None:
    merge = bipartite_soft_matching(METRIC, r=2, prefix=1)
    size = torch.tensor([[1.0, 1.0, 1.0, 3.0, 1.0]])[..., None]
    x, new_size = merge_wavg(merge, X, size)
    expected = torch.stack([X[0, 0], (X[0, 1] + X[0, 4]) / 2, (X[0, 2] + 3 * X[0, 3]) / 4])[None]
    torch.testing.assert_close(x, expected)
    assert new_size[0, :, 0].tolist() == [1.0, 2.0, 4.0]


def test_tome_protects_distillation_token() -> None:
    # with 2 prefix tokens, t1 (B side) never receives a merge: t2 -> t3 is the best edge
    merge = bipartite_soft_matching(METRIC, r=1, prefix=2)
    x, _ = merge_wavg(merge, X, None)
    expected = torch.stack([X[0, 0], X[0, 1], X[0, 4], (X[0, 2] + X[0, 3]) / 2])[None]
    torch.testing.assert_close(x, expected)


def test_tome_r_clipped_per_block_and_trace() -> None:
    model = timm.create_model("test_vit", pretrained=False).eval()  # 101 tokens, 6 blocks
    tome = METHODS.get("tome")
    params = tome.params_for(1.0, model, {"r": 40})
    with tome.apply(model, params) as h, torch.inference_mode():
        model(torch.randn(1, 3, 160, 160))
        assert h.tokens_per_block == [101, 61, 31, 16, 9, 5]  # r_l = min(40, (N - 1) // 2)
        assert h.token_sizes.sum().item() == 101  # every token ends up somewhere


def test_evit_cls_attention_equals_timm_probabilities() -> None:
    model = timm.create_model("test_vit", pretrained=False, qk_norm=True).eval()
    attn = model.blocks[0].attn
    attn.fused_attn = False
    probs, qkv_out = {}, {}
    h1 = attn.attn_drop.register_forward_hook(lambda m, i, o: probs.setdefault("a", o))
    h2 = attn.qkv.register_forward_hook(lambda m, i, o: qkv_out.setdefault("q", o))
    x = torch.randn(2, 101, 64)
    with torch.inference_mode():
        attn(x)
    h1.remove(), h2.remove()
    expected = probs["a"][:, :, 0, 1:].mean(dim=1)
    with torch.inference_mode():
        got = stagebase.cls_attention(qkv_out["q"], attn, 1)
    torch.testing.assert_close(got, expected)


def test_evit_keep_topk_and_fuse(monkeypatch: pytest.MonkeyPatch) -> None:
    a = torch.tensor([[0.1, 0.4, 0.2, 0.3]])
    monkeypatch.setattr(stagebase, "cls_attention", lambda qkv, attn, p: a)
    params = evit_mod.EViTParams(keep_rate=0.5)
    st = ForwardState("evit", 1, "scored", 0, 1, params=params, qkv={0: torch.empty(0)})
    x = torch.arange(5 * 2, dtype=torch.float32).reshape(1, 5, 2)
    out = stagebase.reduce_tokens(x, st, 0, attn=None)
    # keep ceil(0.5 * 4) = 2 tokens in descending attention order (image 2, image 4), fuse 1 and 3
    fused = 0.1 * x[0, 1] + 0.2 * x[0, 3]
    torch.testing.assert_close(out, torch.stack([x[0, 0], x[0, 2], x[0, 4], fused])[None])


def test_evit_keep_counts_round_up_like_official() -> None:
    model = timm.create_model("deit_small_patch16_224", pretrained=False)
    evit = METHODS.get("evit")
    assert evit.schedule(model, evit.params_for(0.7, model)) == [197] * 4 + [140] * 3 + [100] * 3 + [72] * 2
    no_fuse = evit.params_for(0.7, model, {"fuse_token": False})
    assert evit.schedule(model, no_fuse)[-1] == 69  # 1 + 68


# -- GMACs in the papers' convention vs the closed form (references: methods.md section 1.2) --
def _block(na: int, nm: int, c: int) -> int:
    return 5 * na * c + 4 * na * c * c + 2 * na * na * c + 5 * nm * c + 8 * nm * c * c


def _tail(c: int, n_final: int) -> int:
    return 196 * c * 768 + 5 * n_final * c + 1000 * c


def evit_closed(c: int, rho: float) -> float:
    f, n = 0, 196
    for i in range(12):
        if i in (3, 6, 9):
            nm = math.ceil(rho * n) + 1
            f += _block(n + 1, nm + 1, c)
            n = nm
        else:
            f += _block(n + 1, n + 1, c)
    return (f + _tail(c, n + 1)) / 1e9


def tome_closed(c: int, r: int) -> float:
    f, n = 0, 197
    for _ in range(12):
        rr = min(r, (n - 1) // 2)
        f += _block(n, n - rr, c)
        n -= rr
    return (f + _tail(c, n)) / 1e9


@pytest.mark.parametrize(("rho", "published"), [(0.9, 4.0), (0.8, 3.5), (0.7, 3.0), (0.6, 2.6), (0.5, 2.3)])
def test_evit_gmacs_deit_s(rho: float, published: float) -> None:
    model = timm.create_model("deit_small_patch16_224", pretrained=False)
    evit = METHODS.get("evit")
    with evit.apply(model, evit.params_for(rho, model)):
        g = count_gmacs(model)
    assert abs(g - evit_closed(384, rho)) < 0.001  # the CLS-row q.K^T beside fused attention: < 0.001
    assert round(g, 1) == published


@pytest.mark.parametrize(
    ("name", "c", "r", "published"),
    [
        ("deit_small_patch16_224", 384, 8, 3.4),
        ("deit_small_patch16_224", 384, 13, 2.7),
        ("deit_small_patch16_224", 384, 16, 2.3),
        ("deit_tiny_patch16_224", 192, 8, 0.9),
        ("deit_tiny_patch16_224", 192, 12, 0.8),
        ("deit_tiny_patch16_224", 192, 16, 0.6),
    ],
)
def test_tome_gmacs(name: str, c: int, r: int, published: float) -> None:
    model = timm.create_model(name, pretrained=False)
    tome = METHODS.get("tome")
    with tome.apply(model, tome.params_for(1.0, model, {"r": r})):
        g = count_gmacs(model)
    assert abs(g - tome_closed(c, r)) < 0.006  # + the matching matmul, which the paper omits (< 0.005 G)
    assert round(g, 1) == published


def test_tome_keep_ratio_maps_to_evit_gmacs() -> None:
    model = timm.create_model("deit_small_patch16_224", pretrained=False)
    tome = METHODS.get("tome")
    r = tome.params_for(0.7, model).r
    assert abs(tome_closed(384, r) - evit_closed(384, 0.7)) <= min(
        abs(tome_closed(384, r + 1) - evit_closed(384, 0.7)),
        abs(tome_closed(384, r - 1) - evit_closed(384, 0.7)),
    )
