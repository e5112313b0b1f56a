"""TPS squeezing: pruned tokens are fused into their most similar kept token (the "host").

Wei et al., "Joint Token Pruning and Squeezing Towards More Aggressive Compression of Vision
Transformers", CVPR 2023 (official code: megvii-research/TPS-CVPR2023, ``TPSModule`` in
``torch_codebase/models/dynamic_vit.py``). ``references/methods.md`` section 3.2:

1. ``c_ij = <p_i, r_j> / ((|p_i| + 1e-6)(|r_j| + 1e-6)) / T`` between pruned ``p_i`` and kept ``r_j``;
2. ``m_ij = 1`` iff ``c_ij = max_j' c_ij'`` (ties give several hosts);
3. ``r_j <- (e * r_j + sum_i m_ij exp(c_ij) p_i) / (e + sum_i m_ij exp(c_ij))``; kept tokens that
   host nothing are unchanged.

Only image tokens enter these functions: prefix tokens are never pruned and never hosts.
"""

from __future__ import annotations

import math

import torch

#: The host's self-weight: exp(cos(r, r)) = exp(1).
E = math.e


def cosine(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Cosine similarity with TPS's epsilon: [B, m, C] x [B, k, C] -> [B, m, k] (one bmm)."""
    a = a / (a.norm(dim=-1, keepdim=True) + eps)
    b = b / (b.norm(dim=-1, keepdim=True) + eps)
    return torch.bmm(a, b.transpose(1, 2))


def squeeze(kept: torch.Tensor, pruned: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Inference squeeze (eTPS, and dTPS at inference): fuse each pruned token into its host.

    Args:
        kept: reserved image tokens R [B, k, C] (their order is kept).
        pruned: pruned image tokens P [B, m, C].
        temperature: T dividing the cosine similarity (1 by default).

    Returns:
        R' [B, k, C]: hosts updated with the e-weighted formula, other kept tokens unchanged.
    """
    if pruned.shape[1] == 0:
        return kept
    sim = cosine(pruned, kept) / temperature  # [B, m, k]
    host = (sim == sim.amax(dim=-1, keepdim=True)).to(kept.dtype)
    weight = (torch.exp(sim) * host).transpose(1, 2)  # [B, k, m]
    denom = E + weight.sum(dim=-1, keepdim=True)  # [B, k, 1]
    return kept * (E / denom) + torch.bmm(weight / denom, pruned)


def squeeze_dense(
    x: torch.Tensor, keep: torch.Tensor, pruned: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """Training squeeze of dTPS on dense shapes (``TPSModule`` training branch).

    Similarity among all image tokens, diagonal set to -100 (before the temperature, as in the
    official code), host columns restricted to tokens kept at this stage (others -100), rows
    restricted to tokens pruned at this stage; the fusion is one dense bmm. Tokens that are not
    hosts pass through unchanged. Gradients flow through the similarity weights and decisions.

    Args:
        x: image tokens [B, n, C] (all of them; earlier-pruned tokens included).
        keep: this stage's keep decisions [B, n, 1] (0/1, straight-through).
        pruned: tokens pruned at this stage ``(1 - keep) * previous_keep`` [B, n, 1].
        temperature: T.

    Returns:
        [B, n, C].
    """
    b, n, _ = x.shape
    eye = torch.eye(n, dtype=torch.bool, device=x.device)[None]
    sim = cosine(x, x).masked_fill(eye, -100.0) / temperature
    sim = sim.masked_fill(~keep.bool().reshape(b, 1, n), -100.0)  # [B, pruned i, host j]
    mask = (sim == sim.amax(dim=2, keepdim=True)).to(x.dtype) * pruned
    weight = (torch.exp(mask * sim) * mask).transpose(1, 2)  # [B, host j, pruned i]
    denom = E + weight.sum(dim=-1, keepdim=True)
    return x * (E / denom) + torch.bmm(weight / denom, x)


__all__ = ["E", "cosine", "squeeze", "squeeze_dense"]
