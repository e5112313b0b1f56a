"""GMACs in the papers' (fvcore) convention, counted on a real forward pass.

Convention (what DeiT, ToMe, EViT, ... report as "GFLOPs"):

* Linear / matmul / mm / bmm / baddbmm / einsum / convolution: 1 per multiply-accumulate (MAC);
  biases are not counted.
* Attention: ``q @ k^T`` and ``attn @ v`` are both counted, also when timm runs the fused
  ``F.scaled_dot_product_attention`` kernel (flash / efficient / cudnn / CPU flash).
* LayerNorm, GroupNorm, InstanceNorm: 5 per input element with an affine weight, 4 without;
  BatchNorm in eval mode: 2 per element with affine, 1 without (fvcore's handles).
* Softmax, GELU, additions, FFT, top-k, gather, pooling, ...: 0.

The counter is :class:`torch.utils.flop_counter.FlopCounterMode`, which reports 2 FLOPs per MAC
for matmul, convolution and SDPA. The norm ops are added through ``custom_mapping`` (also in
"2 per MAC" units) and every count is halved at the end. Both the composite aten norm ops
(``aten.layer_norm``, seen under :func:`torch.inference_mode`) and their native kernels
(``aten.native_layer_norm``, seen when autograd decomposes them) are mapped; the counter does
not descend into an op it has a formula for, so a norm is never counted twice.

RMSNorm has no fvcore convention: ``aten.rms_norm`` / ``aten._fused_rms_norm`` count 0 and raise
a :class:`RuntimeWarning` so the omission is not silent.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from vitbench.errors import VitbenchError
from vitbench.measure._mode import eval_mode

aten = torch.ops.aten

#: Norm ops without an fvcore convention; they count 0 and trigger a warning.
_UNCOUNTED_NORM_OPS: tuple[str, ...] = ("rms_norm", "_fused_rms_norm")


def _arg(args: tuple[Any, ...], kwargs: dict[str, Any], pos: int, name: str, default: Any) -> Any:
    """Argument ``name`` of an aten call, given positionally at ``pos`` or by keyword."""
    if len(args) > pos:
        return args[pos]
    return kwargs.get(name, default)


def _affine_norm_flops(weight_pos: int) -> Callable[..., int]:
    """Formula after fvcore's ``norm_flop_counter``: 5 MACs per input element with affine weight, else 4.

    Args:
        weight_pos: position of the ``weight`` argument in the aten schema.

    Returns:
        A ``FlopCounterMode`` formula (tensor arguments arrive as shapes) returning 2 x MACs.
    """

    def formula(*args: Any, out_shape: Any = None, **kwargs: Any) -> int:
        weight = _arg(args, kwargs, weight_pos, "weight", None)
        return 2 * (5 if weight is not None else 4) * math.prod(args[0])

    return formula


def _batch_norm_flops(training_pos: int | None) -> Callable[..., int]:
    """Formula after fvcore's ``batchnorm_flop_jit``: eval 2 (affine) / 1 MACs per element.

    In training mode 5 (affine) / 4, like the other norms.

    Args:
        training_pos: position of the ``training`` flag in the aten schema; ``None`` for ops
            that are eval-only (``_native_batch_norm_legit_no_training``).

    Returns:
        A ``FlopCounterMode`` formula returning 2 x MACs.
    """

    def formula(*args: Any, out_shape: Any = None, **kwargs: Any) -> int:
        weight = _arg(args, kwargs, 1, "weight", None)
        training = training_pos is not None and bool(_arg(args, kwargs, training_pos, "training", False))
        if training:
            per_elem = 5 if weight is not None else 4
        else:
            per_elem = 2 if weight is not None else 1
        return 2 * per_elem * math.prod(args[0])

    return formula


def _zero_flops(*args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    """Formula for ops deliberately counted as 0 (registered so they can be detected)."""
    return 0


def _custom_mapping() -> dict[Any, Callable[..., int]]:
    """Map aten op packet -> formula (2 x MACs) for the ops ``FlopCounterMode`` does not count."""
    mapping: dict[Any, Callable[..., int]] = {
        aten.layer_norm: _affine_norm_flops(2),  # (input, normalized_shape, weight, bias, ...)
        aten.native_layer_norm: _affine_norm_flops(2),
        aten.group_norm: _affine_norm_flops(2),  # (input, num_groups, weight, bias, ...)
        aten.native_group_norm: _affine_norm_flops(1),  # (input, weight, bias, N, C, HxW, ...)
        aten.instance_norm: _affine_norm_flops(1),  # (input, weight, bias, rm, rv, use_stats, ...)
        aten.batch_norm: _batch_norm_flops(5),  # (input, weight, bias, rm, rv, training, ...)
        aten.native_batch_norm: _batch_norm_flops(5),
        aten._native_batch_norm_legit: _batch_norm_flops(5),
        aten._native_batch_norm_legit_no_training: _batch_norm_flops(None),
    }
    for name in _UNCOUNTED_NORM_OPS:
        if hasattr(aten, name):
            mapping[getattr(aten, name)] = _zero_flops
    return mapping


def _as_tuple(inputs: torch.Tensor | Sequence[Any]) -> tuple[Any, ...]:
    """Positional forward arguments from a tensor or a sequence of arguments."""
    if isinstance(inputs, torch.Tensor):
        return (inputs,)
    return tuple(inputs)


def _count_flops_by_op(model: nn.Module, inputs: torch.Tensor | Sequence[Any]) -> dict[str, int]:
    """One forward (eval, inference mode) -> op name -> raw FlopCounterMode count (2 x MACs)."""
    args = _as_tuple(inputs)
    counter = FlopCounterMode(display=False, custom_mapping=_custom_mapping())
    with eval_mode(model), torch.inference_mode(), counter:
        model(*args)
    flops = {str(op): int(v) for op, v in counter.get_flop_counts().get("Global", {}).items()}
    missed = sorted(op for op in flops if op.split(".")[-1] in _UNCOUNTED_NORM_OPS)
    if missed:
        warnings.warn(
            f"GMACs: {', '.join(missed)} ran but have no fvcore convention; counted as 0",
            RuntimeWarning,
            stacklevel=3,
        )
    return flops


def gmacs_by_op(model: nn.Module, inputs: torch.Tensor | Sequence[Any]) -> dict[str, int]:
    """MACs per aten op over one forward pass, for debugging the total.

    Args:
        model: the network; run once in eval mode under ``torch.inference_mode()``, its
            train/eval flags restored afterwards.
        inputs: a tensor (e.g. ``[1, 3, 224, 224]`` float) or a tuple of positional arguments,
            already on the model's device.

    Returns:
        Op name (e.g. ``"aten.addmm"``, ``"aten.layer_norm"``) -> MACs (int) in the papers'
        convention. Ops counted as 0 may be absent.
    """
    return {op: v // 2 for op, v in _count_flops_by_op(model, inputs).items()}


def count_macs(model: nn.Module, inputs: torch.Tensor | Sequence[Any]) -> int:
    """Total MACs of one forward pass in the papers' (fvcore) convention.

    Args:
        model: the network; run once in eval mode under ``torch.inference_mode()``, its
            train/eval flags restored afterwards. Not moved or otherwise modified.
        inputs: a tensor (e.g. ``[1, 3, 224, 224]`` float) or a tuple of positional arguments,
            already on the model's device. Use batch 1 for per-image numbers.

    Returns:
        Multiply-accumulates for the whole batch (int).
    """
    return sum(gmacs_by_op(model, inputs).values())


def count_gmacs(
    model: nn.Module,
    input_size: tuple[int, int, int] = (3, 224, 224),
    device: str | torch.device = "cpu",
    seed: int = 0,
) -> float:
    """GMACs per image (batch 1) in the papers' convention, on a synthetic input.

    The input is ``randn`` from a dedicated ``torch.Generator`` seeded with ``seed`` (the
    global RNG is untouched), so input-dependent methods give reproducible counts.

    Args:
        model: the network, already on ``device``.
        input_size: ``(C, H, W)`` of one image.
        device: where the input is created; must match the model's device.
        seed: seed of the input generator.

    Returns:
        MACs / 1e9 for one image.
    """
    gen = torch.Generator(device="cpu").manual_seed(seed)
    x = torch.randn((1, *input_size), generator=gen).to(device)
    return count_macs(model, x) / 1e9


def vit_block_macs(n_attn: int, n_mlp: int, dim: int, attn_dim: int, mlp_hidden: int, ln: int = 5) -> int:
    """Analytic MACs of one pre-norm ViT block (for choosing method settings, not reporting).

    ``ln*n_attn*dim`` (norm1) + ``3*n_attn*dim*attn_dim`` (qkv) + ``2*n_attn**2*attn_dim``
    (``q k^T`` and ``attn v``) + ``n_attn*attn_dim*dim`` (proj) + ``ln*n_mlp*dim`` (norm2) +
    ``2*n_mlp*dim*mlp_hidden`` (fc1, fc2).

    Args:
        n_attn: tokens entering attention (prefix tokens included).
        n_mlp: tokens entering the MLP (differs from ``n_attn`` when a method drops or merges
            tokens inside the block).
        dim: embedding dim C.
        attn_dim: total q/k/v width (heads x head_dim; C for a dense ViT).
        mlp_hidden: MLP hidden width (4C for a dense ViT).
        ln: MACs per element of a LayerNorm (5 in the fvcore convention).

    Returns:
        MACs of the block for one image.
    """
    norm1 = ln * n_attn * dim
    qkv = 3 * n_attn * dim * attn_dim
    attn = 2 * n_attn**2 * attn_dim
    proj = n_attn * attn_dim * dim
    mlp = ln * n_mlp * dim + 2 * n_mlp * dim * mlp_hidden
    return norm1 + qkv + attn + proj + mlp


def vit_schedule_macs(
    tokens_attn: Sequence[int], tokens_mlp: Sequence[int], dim: int, attn_dim: int, mlp_hidden: int
) -> int:
    """Analytic MACs of all blocks for a token schedule (no patch stem, final norm or head).

    Args:
        tokens_attn: per block, tokens entering attention.
        tokens_mlp: per block, tokens entering the MLP; same length as ``tokens_attn``.
        dim: embedding dim C.
        attn_dim: total q/k/v width.
        mlp_hidden: MLP hidden width.

    Returns:
        Sum of :func:`vit_block_macs` over blocks, for one image.

    Raises:
        VitbenchError: the two schedules differ in length.
    """
    if len(tokens_attn) != len(tokens_mlp):
        raise VitbenchError(
            f"token schedules differ in length ({len(tokens_attn)} attention vs {len(tokens_mlp)} MLP);"
            " give one entry per block in both"
        )
    return sum(vit_block_macs(na, nm, dim, attn_dim, mlp_hidden) for na, nm in zip(tokens_attn, tokens_mlp))


def vit_dims(model: nn.Module) -> tuple[int, int, int, int]:
    """Dimensions of a timm ``VisionTransformer``, read from block 0.

    Args:
        model: a timm VisionTransformer (``embed_dim``, ``blocks[i].attn.qkv``,
            ``blocks[i].mlp.fc1``).

    Returns:
        ``(dim, attn_dim, mlp_hidden, depth)``: embedding dim, total q/k/v width, MLP hidden
        width and number of blocks. Channel-pruned models may differ per block; this reads
        block 0 only.

    Raises:
        VitbenchError: the model does not have the timm ViT layout.
    """
    try:
        blocks: Any = model.blocks
        block0: Any = blocks[0]
        dim = int(model.embed_dim)  # type: ignore[arg-type]
        attn_dim = int(block0.attn.qkv.out_features) // 3
        mlp_hidden = int(block0.mlp.fc1.out_features)
        depth = len(blocks)
    except (AttributeError, IndexError, TypeError) as exc:
        raise VitbenchError(
            f"{type(model).__name__} is not a timm VisionTransformer (missing {exc}); "
            "use a timm ViT/DeiT model or compute dims by hand"
        ) from exc
    return dim, attn_dim, mlp_hidden, depth
