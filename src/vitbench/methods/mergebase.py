"""What token-merging methods share: token sizes pooled by size on average-pooled ViTs.

A merged token stands for ``size`` original patches. A ViT whose head averages its tokens
(``global_pool='avg'``, MAE's fine-tuned models) must weight each token by its size, or the
pooled feature is no longer the mean over the patches; the official ToMe patch of MAE
(facebookresearch/ToMe ``tome/patch/mae.py``) and PiToMe's (hchautran/PiToMe
``algo/pitome/patch/mae.py``) pool that way. Methods that track sizes in
``ForwardState.extra["size"]`` ([B, N, 1]) patch the model's ``pool`` with :func:`patch_size_pool`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from vitbench.core.errors import VitbenchError
from vitbench.methods.patching.patch import ForwardState, Handle, patch_model_class


def size_weighted_pool(
    x: torch.Tensor, size: torch.Tensor, prefix: int, include_prefix: bool
) -> torch.Tensor:
    """Average of the tokens of ``x`` [B, N, C] weighted by their sizes ``size`` [B, N, 1] -> [B, C].

    ``sum_j size_j x_j / sum_j size_j`` over the image tokens (all tokens when
    ``include_prefix``; prefix tokens have size 1): the mean over the original patches that the
    merged tokens stand for (official ``tome/patch/mae.py``: ``(x * size)[:, 1:].sum(1) / T``).
    """
    if not include_prefix:
        x, size = x[:, prefix:], size[:, prefix:]
    size = size.to(x.dtype)
    return (x * size).sum(dim=1) / size.sum(dim=1)


class SizePoolMixin:
    """Size-weighted pooling on a VisionTransformer that averages its tokens (``global_pool='avg'``).

    Modifications to timm's ``VisionTransformer.pool``:
        - after a merge, the average is weighted by token size (:func:`size_weighted_pool`),
          as the official ToMe and PiToMe patches of MAE's pooled models; before any merge
          timm's own pooling runs, bit for bit;
        - any other pooling type asked for explicitly after a merge is refused (max pooling
          over merged tokens is not the max over the original patches).
    """

    _vb_state: ForwardState

    def pool(self, x: torch.Tensor, pool_type: str | None = None) -> torch.Tensor:  # noqa: D102
        vit: Any = self
        size = self._vb_state.extra.get("size")
        kind = vit.global_pool if pool_type is None else pool_type
        if size is None or size.shape[1] != x.shape[1]:
            return super().pool(x, pool_type)  # type: ignore[misc]
        if kind != "avg":
            raise VitbenchError(
                f"{self._vb_state.method} cannot pool merged tokens with global_pool='{kind}'; "
                "only 'avg' (size-weighted) and 'token' are reproduced"
            )
        return size_weighted_pool(x, size, self._vb_state.prefix, bool(vit.pool_include_prefix))


def patch_size_pool(model: nn.Module, st: ForwardState, handle: Handle) -> None:
    """Patch ``model.pool`` with :class:`SizePoolMixin` when the model averages its tokens.

    Registered on ``handle`` (undone with it); on failure the handle is closed and the error
    raised, so no half-patched model is left.
    """
    if getattr(model, "global_pool", "token") != "avg":
        return
    try:
        patch_model_class(model, st, SizePoolMixin, handle)
    except BaseException:
        handle.close()
        raise


__all__ = ["SizePoolMixin", "patch_size_pool", "size_weighted_pool"]
