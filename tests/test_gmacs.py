"""GMACs counter vs the papers' (fvcore) closed form for dense DeiT."""

from __future__ import annotations

from typing import Any

import pytest
import timm
import torch
from torch import nn

from vitbench.core.errors import VitbenchError
from vitbench.measure import (
    count_gmacs,
    count_macs,
    gmacs_by_op,
    macs_by_kind,
    vit_block_macs,
    vit_dims,
    vit_schedule_macs,
)


def deit_closed_form_macs(dim: int, tokens: int = 197, depth: int = 12, classes: int = 1000) -> int:
    """fvcore-convention MACs of a dense DeiT (MLP hidden 4C, 16x16 patches, 224 px)."""
    n, c = tokens, dim
    block = 5 * n * c + 3 * n * c * c + 2 * n * n * c + n * c * c + 5 * n * c + 8 * n * c * c
    stem = 196 * c * 768
    tail = 5 * n * c + classes * c
    return stem + depth * block + tail


def _fast_model(name: str) -> nn.Module:
    """timm model without random init (meta -> empty -> zeros): same graph, much faster."""
    with torch.device("meta"):
        model = timm.create_model(name, pretrained=False)
    model = model.to_empty(device="cpu")
    with torch.no_grad():
        for t in [*model.parameters(), *model.buffers()]:
            t.zero_()
    return model


@pytest.fixture(scope="module")
def deit_tiny() -> nn.Module:
    return timm.create_model("deit_tiny_patch16_224", pretrained=False)


def test_deit_tiny_exact_and_attention_paths_agree(deit_tiny: nn.Module) -> None:
    expected = deit_closed_form_macs(192)
    assert expected == 1_258_411_200
    gmacs = count_gmacs(deit_tiny)
    assert round(gmacs * 1e9) == expected  # exact integer MACs
    assert round(gmacs, 2) == 1.26

    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    fused_ops = gmacs_by_op(deit_tiny, x)
    assert any("scaled_dot_product" in op for op in fused_ops), fused_ops
    assert sum(fused_ops.values()) == expected

    blocks: list[Any] = list(deit_tiny.blocks)  # type: ignore[arg-type]
    saved = [blk.attn.fused_attn for blk in blocks]
    try:
        for blk in blocks:
            blk.attn.fused_attn = False
        plain_ops = gmacs_by_op(deit_tiny, x)
    finally:
        for blk, flag in zip(blocks, saved):
            blk.attn.fused_attn = flag
    assert not any("scaled_dot_product" in op for op in plain_ops), plain_ops
    assert sum(plain_ops.values()) == expected
    ln_macs = 25 * 5 * 197 * 192  # 25 LayerNorms x 5 MACs per element
    assert macs_by_kind(plain_ops)["norm"] == macs_by_kind(fused_ops)["norm"] == ln_macs
    attn_macs = 12 * 2 * 197 * 197 * 192  # q k^T and attn v in 12 blocks
    assert macs_by_kind(fused_ops)["attention"] == attn_macs
    assert "attention" not in macs_by_kind(plain_ops)  # explicit matmuls count as matmul


@pytest.mark.parametrize(
    ("name", "dim", "rounded"),
    [("deit_small_patch16_224", 384, 4.61), ("deit_base_patch16_224", 768, 17.58)],
)
def test_deit_small_base_exact(name: str, dim: int, rounded: float) -> None:
    model = _fast_model(name)
    gmacs = count_gmacs(model)
    assert round(gmacs * 1e9) == deit_closed_form_macs(dim)  # exact integer MACs
    assert round(gmacs, 2) == rounded


def test_schedule_helpers_match_real_count(deit_tiny: nn.Module) -> None:
    dim, attn_dim, mlp_hidden, depth = vit_dims(deit_tiny)
    assert (dim, attn_dim, mlp_hidden, depth) == (192, 192, 768, 12)
    blocks = vit_schedule_macs([197] * depth, [197] * depth, dim, attn_dim, mlp_hidden)
    stem, tail = 196 * dim * 768, 5 * 197 * dim + 1000 * dim
    assert stem + blocks + tail == count_macs(deit_tiny, torch.zeros(1, 3, 224, 224))
    # a block that merges tokens between attention and MLP
    c = 192
    assert vit_block_macs(197, 100, c, c, 4 * c) == (
        5 * 197 * c + 4 * 197 * c * c + 2 * 197**2 * c + 5 * 100 * c + 8 * 100 * c * c
    )
    with pytest.raises(VitbenchError):
        vit_schedule_macs([197, 197], [197], c, c, 4 * c)
    with pytest.raises(VitbenchError):
        vit_dims(nn.Linear(2, 2))


def test_toy_linear_layernorm_and_training_flag_restored() -> None:
    model = nn.Sequential(nn.Linear(8, 16), nn.LayerNorm(16))
    model.train()
    x = torch.randn(3, 8, generator=torch.Generator().manual_seed(0))
    assert count_macs(model, x) == 3 * 8 * 16 + 5 * 3 * 16
    assert macs_by_kind(gmacs_by_op(model, (x,))) == {"matmul": 384, "norm": 240}
    assert model.training and all(m.training for m in model.modules())


def test_other_norms_and_matmul_paths() -> None:
    x = torch.randn(2, 8, 4, 4)
    assert count_macs(nn.BatchNorm2d(8), x) == 2 * x.numel()  # fvcore eval BN
    assert count_macs(nn.GroupNorm(2, 8), x) == 5 * x.numel()
    assert count_macs(nn.LayerNorm(4, elementwise_affine=False), x) == 4 * x.numel()

    class MatMuls(nn.Module):
        def forward(self, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
            out = torch.einsum("bij,bjk->bik", a, b) + torch.baddbmm(c, a, b) + a @ b
            return out + torch.bmm(a, b) + torch.mm(a[0], b[0])

    a, b, c = torch.randn(3, 5, 7), torch.randn(3, 7, 11), torch.randn(3, 5, 11)
    assert count_macs(MatMuls(), (a, b, c)) == 4 * 3 * 5 * 7 * 11 + 5 * 7 * 11


def test_rms_norm_is_flagged() -> None:
    with pytest.warns(RuntimeWarning, match="rms_norm"):
        assert count_macs(nn.RMSNorm(4), torch.randn(2, 4)) == 0
