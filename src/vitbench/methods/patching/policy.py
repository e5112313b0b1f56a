"""DynamicViT building blocks: the keep-score predictor, hard Gumbel decisions, policy attention.

Rao et al., "DynamicViT: Efficient Vision Transformers with Dynamic Token Sparsification",
NeurIPS 2021 (official code: raoyongming/DynamicViT ``models/dyvit.py``; the same modules are in
megvii-research/TPS-CVPR2023 ``torch_codebase/models/dynamic_vit.py``). Written against the
equations in ``references/methods.md`` section 5; the modules are timm-agnostic tensor code.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from vitbench.methods.patching.patch import split_qkv

#: DynamicViT's ``softmax_with_policy`` epsilon.
POLICY_EPS = 1e-6


class PredictorLG(nn.Module):
    """DynamicViT's ``PredictorLG``: local + global features -> log-probabilities (keep, drop).

    ``z = GELU(Linear(LN(x)))``; local = ``z[..., :C/2]``; global = the policy-weighted mean of
    ``z[..., C/2:]`` over tokens; logits = ``LogSoftmax(MLP_{C -> C/2 -> C/4 -> 2}([local, global]))``.
    Index 0 of the last axis is "keep".
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.in_conv = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim), nn.GELU())
        self.out_conv = nn.Sequential(
            nn.Linear(dim, dim // 2),
            nn.GELU(),
            nn.Linear(dim // 2, dim // 4),
            nn.GELU(),
            nn.Linear(dim // 4, 2),
            nn.LogSoftmax(dim=-1),
        )

    def reset(self, gen: torch.Generator) -> PredictorLG:
        """Official init from ``gen``: Linear weights trunc-normal(std 0.02), biases 0, LayerNorm (1, 0)."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02, generator=gen)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        return self

    def forward(self, x: torch.Tensor, policy: torch.Tensor | None = None) -> torch.Tensor:
        """Keep/drop log-probabilities.

        Args:
            x: image tokens [B, n, C].
            policy: previous keep decisions [B, n, 1] in {0, 1} (training); ``None`` means every
                token is kept (inference, where dropped tokens are physically gone).

        Returns:
            [B, n, 2] log-softmax over (keep, drop).
        """
        z = self.in_conv(x)
        b, n, c = z.shape
        local, rest = z[..., : c // 2], z[..., c // 2 :]
        if policy is None:
            glob = rest.mean(dim=1, keepdim=True)
        else:  # an all-dropped sample gives 0 instead of the official 0/0 = NaN
            glob = (rest * policy).sum(dim=1, keepdim=True) / policy.sum(dim=1, keepdim=True).clamp_min(1e-6)
        return self.out_conv(torch.cat([local, glob.expand(b, n, c - c // 2)], dim=-1))


def gumbel_keep(log_probs: torch.Tensor, uniform: torch.Tensor, tau: float = 1.0) -> torch.Tensor:
    """Hard Gumbel-softmax keep decision with the straight-through gradient.

    Forward: one-hot ``argmax((log_probs + g) / tau)`` with ``g = -log(-log(u)) ~ Gumbel(0, 1)``;
    backward: the gradient of the soft sample ``softmax((log_probs + g) / tau)``.

    Args:
        log_probs: [B, n, 2] (keep, drop) log-probabilities.
        uniform: [B, n, 2] uniform numbers in [0, 1) (seeded by the caller).
        tau: temperature (1 in DynamicViT and TPS).

    Returns:
        [B, n, 1] keep decisions: exactly 0 or 1 in the forward pass.
    """
    tiny = torch.finfo(log_probs.dtype).tiny
    expo = -uniform.to(log_probs.dtype).clamp_min(tiny).log()  # Exp(1); the official code redraws infs
    gumbels = -expo.clamp_min(tiny).log()
    soft = ((log_probs + gumbels) / tau).softmax(dim=-1)
    hard = torch.zeros_like(soft).scatter_(-1, soft.argmax(dim=-1, keepdim=True), 1.0)
    return (hard - soft.detach() + soft)[..., :1]


def softmax_with_policy(logits: torch.Tensor, policy: torch.Tensor, eps: float = POLICY_EPS) -> torch.Tensor:
    """DynamicViT's masked softmax: kept tokens never read dropped ones; every token reads itself.

    ``G_ij = P_j + (1 - P_j) * delta_ij``; ``A~_ij = exp(A_ij - max_j A_ij) * G_ij``;
    ``out = (A~ + eps / N) / (sum_j A~_ij + eps)``, computed in float32.

    Args:
        logits: attention logits [B, H, N, N] (already scaled).
        policy: keep policy [B, N, 1] (prefix tokens 1); may carry straight-through gradients.
        eps: the official 1e-6.

    Returns:
        Attention probabilities [B, H, N, N] in the dtype of ``logits``.
    """
    b, n, _ = policy.shape
    p = policy.reshape(b, 1, 1, n)
    eye = torch.eye(n, dtype=p.dtype, device=p.device).view(1, 1, n, n)
    gate = p + (1.0 - p) * eye
    shifted = logits - logits.amax(dim=-1, keepdim=True)
    weights = shifted.to(torch.float32).exp() * gate.to(torch.float32)
    probs = (weights + eps / n) / (weights.sum(dim=-1, keepdim=True) + eps)
    return probs.type_as(logits)


def policy_attention(attn: Any, x: torch.Tensor, policy: torch.Tensor) -> torch.Tensor:
    """Timm ``Attention.forward`` (non-fused path) with :func:`softmax_with_policy` as the softmax.

    Uses the module's own ``qkv``, ``q_norm``/``k_norm``, ``scale``, ``attn_drop``, ``norm``,
    optional ``gate``, ``proj`` and ``proj_drop``.

    Args:
        attn: a timm ``Attention`` module.
        x: normalised tokens [B, N, C].
        policy: keep policy [B, N, 1].

    Returns:
        [B, N, C_out] attention output before the residual.
    """
    b, n, _ = x.shape
    gate_mod = getattr(attn, "gate", None)
    gate = gate_mod(x).sigmoid() if gate_mod is not None else None
    q, k, v = split_qkv(attn.qkv(x), attn)  # [B, H, N, d] each
    probs = softmax_with_policy((q * attn.scale) @ k.transpose(-2, -1), policy)
    out = (attn.attn_drop(probs) @ v).transpose(1, 2).reshape(b, n, attn.num_heads * attn.head_dim)
    out = attn.norm(out)
    if gate is not None:
        out = out * gate
    return attn.proj_drop(attn.proj(out))


__all__ = ["POLICY_EPS", "PredictorLG", "gumbel_keep", "policy_attention", "softmax_with_policy"]
