"""The pruning-stage block shared by EViT and eTPS: top-k of image tokens after the attention residual.

Both methods (and any method scoring image tokens after attention) run timm's attention, then
keep the ``ceil(rho * n)`` best-scored image tokens (:func:`keep_top`) and hand the pruned ones
to a method-specific step (EViT fuses them into one token, eTPS squeezes them into their kept
hosts); the MLP runs on the shorter sequence (:class:`StageBlockMixin`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar

import torch

from vitbench.core.errors import VitbenchError
from vitbench.methods.patching.patch import CountingMixin, ForwardState
from vitbench.methods.patching.stages import evit_keep


@dataclasses.dataclass(frozen=True)
class TopSplit:
    """Image tokens of one stage split into kept and pruned.

    Attributes:
        kept: [B, left, C] kept image tokens, in descending score order.
        pruned: [B, n - left, C] pruned image tokens, in ascending position order.
        pruned_idx: [B, n - left] positions of the pruned tokens among the n image tokens.
        scores: [B, n] the method's scores of the image tokens, or ``None`` when not computed.
    """

    kept: torch.Tensor
    pruned: torch.Tensor
    pruned_idx: torch.Tensor
    scores: torch.Tensor | None


def keep_top(
    x: torch.Tensor,
    st: ForwardState,
    index: int,
    score: Callable[[], torch.Tensor],
    need_scores: bool = False,
) -> TopSplit | None:
    """Split the image tokens of ``x`` [B, N, C] into the top ``ceil(rho * n)`` and the rest.

    Args:
        x: tokens after the attention residual; the first ``st.prefix`` are never pruned.
        st: the forward state (``params.keep_rate``, ``selection``, the captured ``qkv``).
        index: the block index (key of the captured qkv and of the random stream).
        score: ``() -> [B, n]`` the method's scores of the image tokens (higher = kept), e.g.
            the class-token attention from the captured qkv; called at most once.
        need_scores: call ``score`` even for ``selection="random"`` (e.g. fusion weights).

    Returns:
        ``None`` when every image token is kept (a captured qkv is released), else the split.
        Selection uses ``score()`` (``"scored"``) or seeded uniform numbers (``"random"``,
        stream ``index``).
    """
    p = st.prefix
    b, n_all, c = x.shape
    n = n_all - p
    left = evit_keep(st.params.keep_rate, n)
    if left >= n:
        st.qkv.pop(index, None)
        return None
    own = score() if (need_scores or st.selection == "scored") else None
    ranking = own if st.selection == "scored" else st.uniform(index, (n,), x)
    assert ranking is not None
    idx = ranking.topk(left, dim=1, largest=True, sorted=True).indices  # [B, left]
    img = x[:, p:]
    pruned_mask = torch.ones(b, n, dtype=torch.bool, device=x.device).scatter_(1, idx, False)
    compl = pruned_mask.nonzero()[:, 1].view(b, n - left)  # [B, n - left], ascending
    kept = img.gather(1, idx[..., None].expand(-1, -1, c))
    pruned = img.gather(1, compl[..., None].expand(-1, -1, c))
    return TopSplit(kept, pruned, compl, own)


class StageBlockMixin(CountingMixin):
    """A pruning-stage block: timm's attention residual, then :attr:`reduce`, then the MLP.

    Modifications to timm's ``Block.forward``:
        - between the attention residual and the MLP, ``reduce(x, state, block index, attn)``
          shortens the sequence (the subclass's reduction; prefix tokens stay in front);
        - an external ``attn_mask`` is not supported.
        LayerScale, drop-path, q/k norms and fused attention are timm's own.
    """

    #: ``(x [B, N, C], state, block index, attn module) -> [B, N', C]``, set by each subclass
    #: as ``reduce = staticmethod(function)``.
    reduce: ClassVar[Any]

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, **kw: Any) -> torch.Tensor:  # noqa: D102
        st = self._vb_enter(x)
        if attn_mask is not None:
            raise VitbenchError(f"'{st.method}' does not support an attention mask; run without attn_mask")
        blk: Any = self
        x = x + blk.drop_path1(blk.ls1(blk.attn(blk.norm1(x), **kw)))
        x = type(self).reduce(x, st, self._vb_index, blk.attn)
        return x + blk.drop_path2(blk.ls2(blk.mlp(blk.norm2(x))))


__all__ = ["StageBlockMixin", "TopSplit", "keep_top"]
