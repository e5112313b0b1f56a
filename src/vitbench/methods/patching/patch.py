"""Seam patches on timm ViT blocks: class swap with undo, qkv capture, per-forward state.

A token method swaps the class of every ``model.blocks[i]`` to a subclass of the block's own
class (so timm's modules and parameters are used as they are) and returns a :class:`Handle`.
Leaving the handle's context restores the original classes, removes hooks and attributes,
and leaves the model bit-for-bit as it was.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from vitbench.core.errors import VitbenchError
from vitbench.core.models import input_grid
from vitbench.methods.patching.rng import keyed_uniform

_BLOCK_PARTS = ("norm1", "attn", "ls1", "drop_path1", "norm2", "mlp", "ls2", "drop_path2")


@dataclasses.dataclass
class ForwardState:
    """State shared by the patched blocks of one model during one forward.

    Attributes:
        method: registry key of the method that owns the patch.
        prefix: number of prefix tokens (CLS, distillation, register tokens) never reduced.
        selection: ``"scored"`` or ``"random"``.
        seed: seed of random selection.
        depth: number of blocks.
        params: the method's frozen native parameters.
        sample_ids: int64 [B] dataset ids of the current batch (set by the harness).
        tokens: tokens entering block 0 that the method's counts were resolved for
            (:func:`input_tokens`); a forward with another count is refused. 0: any count
            (methods that count from the tokens they see, e.g. EViT).
        tokens_in: tokens entering each block in the last forward, prefix included.
        qkv: captured ``attn.qkv`` outputs [B, N, 3 * attn_dim] of the current forward.
        extra: method-specific per-forward values (e.g. ToMe token sizes).
    """

    method: str
    prefix: int
    selection: str
    seed: int
    depth: int
    params: Any = None
    sample_ids: torch.Tensor | None = None
    tokens: int = 0
    tokens_in: list[int] = dataclasses.field(default_factory=list)
    qkv: dict[int, torch.Tensor] = dataclasses.field(default_factory=dict)
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    def begin(self, x: torch.Tensor) -> None:
        """Reset per-forward values at block 0; ``x`` is [B, N, C].

        Raises:
            VitbenchError: ``tokens`` is set and ``x`` has another number of tokens (an input
                of another size than the one the method's counts were resolved for).
        """
        if self.tokens and x.shape[1] != self.tokens:
            raise VitbenchError(
                f"'{self.method}' resolved its token counts for {self.tokens} tokens (the model's input "
                f"size), this input gives {x.shape[1]}: configure the input size first "
                "(data_config input_size, vitbench.core.models.apply_data_config), then apply the method"
            )
        self.tokens_in = [0] * self.depth
        self.qkv.clear()
        self.extra.clear()
        if self.sample_ids is None or self.sample_ids.shape[0] != x.shape[0]:
            self._ids = torch.arange(x.shape[0], device=x.device)
        else:
            self._ids = self.sample_ids.to(x.device)

    def uniform(self, stream: int, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        """Seeded uniform scores [B, *shape] keyed by sample ids and ``stream``."""
        return keyed_uniform(self.seed, self._ids, stream, shape).to(like.device, like.dtype)


class CountingMixin:
    """Records the tokens entering the block, then runs the block's own forward.

    Modifications: none to the computation; block 0 also resets the per-forward state.
    """

    _vb_state: ForwardState
    _vb_index: int

    def _vb_enter(self, x: torch.Tensor) -> ForwardState:
        st = self._vb_state
        if self._vb_index == 0:
            st.begin(x)
        st.tokens_in[self._vb_index] = x.shape[1]
        return st

    def forward(self, x: torch.Tensor, **kwargs: Any) -> torch.Tensor:  # noqa: D102
        self._vb_enter(x)
        return super().forward(x, **kwargs)  # type: ignore[misc]


def split_qkv(qkv: torch.Tensor, attn: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Split a captured qkv projection into normalised heads.

    Args:
        qkv: [B, N, 3 * H * d] output of ``attn.qkv``.
        attn: the timm ``Attention`` module (for ``num_heads``, ``head_dim``, ``q_norm``, ``k_norm``).

    Returns:
        q, k, v, each [B, H, N, d], with ``q_norm``/``k_norm`` applied as timm applies them.
    """
    b, n, _ = qkv.shape
    q, k, v = qkv.reshape(b, n, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
    return attn.q_norm(q), attn.k_norm(k), v


def check_vit(model: nn.Module, method: str, unpatched: bool = False) -> nn.Sequential | nn.ModuleList:
    """Return ``model.blocks`` after checking the timm ViT block structure (and no patch, if asked)."""
    blocks = getattr(model, "blocks", None)
    if not isinstance(blocks, (nn.Sequential, nn.ModuleList)) or len(blocks) == 0:
        raise VitbenchError(
            f"method '{method}' needs a timm VisionTransformer with `.blocks`; got {type(model).__name__}"
        )
    blk: Any
    for i, blk in enumerate(blocks):
        missing = [p for p in _BLOCK_PARTS if not hasattr(blk, p)]
        attn = getattr(blk, "attn", None)
        if missing or not isinstance(getattr(attn, "qkv", None), nn.Linear):
            raise VitbenchError(
                f"method '{method}' supports timm ViT blocks (norm1/attn.qkv/ls1/mlp/...); block {i} "
                f"of {type(model).__name__} is a {type(blk).__name__}"
            )
        if unpatched and getattr(blk, "_vb_state", None) is not None:
            raise VitbenchError(
                f"model is already patched by '{blk._vb_state.method}'; leave that handle's context first"
            )
    return blocks


class Handle:
    """Undo handle of a token method; a context manager.

    Attributes:
        state: the shared :class:`ForwardState`.
    """

    def __init__(self, model: nn.Module, state: ForwardState) -> None:
        self.model = model
        self.state = state
        self._undo: list[Callable[[], None]] = []
        self.closed = False

    @property
    def tokens_per_block(self) -> list[int]:
        """Tokens (prefix included) entering each block in the last forward."""
        return list(self.state.tokens_in)

    @property
    def token_sizes(self) -> torch.Tensor | None:
        """Merging methods: patches represented by each final token, [B, N_final, 1] (else None)."""
        return self.state.extra.get("size")

    def set_sample_ids(self, sample_ids: torch.Tensor | None) -> None:
        """Key random selection to dataset ids of the next batch (int64 [B])."""
        self.state.sample_ids = sample_ids

    def close(self) -> None:
        """Restore the model exactly as it was."""
        if self.closed:
            return
        for undo in reversed(self._undo):
            undo()
        self._undo.clear()
        self.closed = True

    def __enter__(self) -> Handle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_CLASS_CACHE: dict[tuple[type, type], type] = {}


def _subclass(mixin: type, base: type) -> type:
    key = (mixin, base)
    if key not in _CLASS_CACHE:
        _CLASS_CACHE[key] = type(f"{mixin.__name__.replace('Mixin', '')}{base.__name__}", (mixin, base), {})
    return _CLASS_CACHE[key]


def patch_blocks(
    model: nn.Module,
    state: ForwardState,
    mixin_for: Callable[[int], type],
    capture_qkv: set[int] | frozenset[int] = frozenset(),
) -> Handle:
    """Swap every block's class to ``mixin_for(i)`` + its own class; capture qkv where asked.

    Args:
        model: a timm VisionTransformer (checked by :func:`check_vit`).
        state: per-forward state shared by all patched blocks.
        mixin_for: block index -> mixin class placed before the block's own class in the MRO.
        capture_qkv: indices of blocks whose ``attn.qkv`` output is stored in ``state.qkv``.
    """
    blocks = check_vit(model, state.method, unpatched=True)
    handle = Handle(model, state)
    blk: Any
    for i, blk in enumerate(blocks):
        original = blk.__class__
        blk.__class__ = _subclass(mixin_for(i), original)
        blk._vb_state = state
        blk._vb_index = i

        def undo(blk: nn.Module = blk, original: type = original) -> None:
            blk.__class__ = original
            del blk._vb_state
            del blk._vb_index

        handle._undo.append(undo)
        if i in capture_qkv:
            qkv = blk.attn.qkv
            qkv._vb_slot = (state, i)
            removable = qkv.register_forward_hook(_capture_qkv)

            def unhook(qkv: Any = qkv, removable: Any = removable) -> None:
                removable.remove()
                del qkv._vb_slot

            handle._undo.append(unhook)
    return handle


def patch_model_class(model: nn.Module, state: ForwardState, mixin: type, handle: Handle) -> None:
    """Swap the class of ``model`` itself to ``mixin`` + its own class (e.g. to change its pooling).

    The mixin reads the shared ``state`` as ``model._vb_state``; ``handle`` restores the class
    and removes the attribute on close.

    Raises:
        VitbenchError: the model's class is already patched.
    """
    current: Any = getattr(model, "_vb_state", None)
    if current is not None:
        method = current.method
        raise VitbenchError(f"model is already patched by '{method}'; leave that handle's context first")
    original = model.__class__
    model.__class__ = _subclass(mixin, original)
    model._vb_state = state  # type: ignore[assignment]

    def undo() -> None:
        model.__class__ = original
        del model._vb_state

    handle._undo.append(undo)


def _capture_qkv(module: nn.Module, _inp: Any, out: torch.Tensor) -> None:
    """Forward hook of ``attn.qkv``: store its output [B, N, 3 * attn_dim] in the shared state.

    The (state, block index) slot lives on the module, so a deep copy of a patched model
    captures into its own copied state.
    """
    state, index = module._vb_slot  # type: ignore[misc]
    state.qkv[index] = out


def prefix_tokens(model: nn.Module) -> int:
    """Number of prefix tokens (CLS, distillation, registers) of a timm ViT."""
    return int(getattr(model, "num_prefix_tokens", 1 if getattr(model, "cls_token", None) is not None else 0))


def input_tokens(model: nn.Module) -> int:
    """Tokens entering block 0 for the images ``model`` is fed (patches + prefix tokens).

    The patches are those of :func:`vitbench.core.models.input_grid`: the native grid of a
    fixed-size ViT, the grid of the configured input size of a ``dynamic_img_size`` ViT.

    Raises:
        VitbenchError: a model without a patch embedding that states its image size.
    """
    if getattr(getattr(model, "patch_embed", None), "num_patches", None) is None:
        raise VitbenchError(f"cannot find the number of patches of {type(model).__name__}")
    rows, cols = input_grid(model)
    return rows * cols + prefix_tokens(model)
