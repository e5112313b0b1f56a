"""GMACs in the papers' (fvcore) convention, counted on a real forward pass.

Convention (what DeiT, ToMe, EViT, ... report as "GFLOPs"):

* Linear / matmul / mm / bmm / baddbmm / einsum / convolution: 1 per multiply-accumulate (MAC);
  biases are not counted.
* Attention: ``q @ k^T`` and ``attn @ v`` are both counted, ``B * H * Lq * Lk * (E + Ev)`` MACs,
  whichever op carries them: the explicit matmuls, the composite
  ``aten.scaled_dot_product_attention`` (what ``torch.inference_mode`` dispatches on recent torch
  releases) or any backend kernel (math, CPU flash, flash, efficient, cuDNN, overrideable, and the
  ``_flash_attention_forward`` / ``_efficient_attention_forward`` kernels beneath them).
* LayerNorm, GroupNorm, InstanceNorm: 5 per input element with an affine weight, 4 without;
  BatchNorm in eval mode: 2 per element with affine, 1 without (fvcore's handles).
* Softmax, GELU, additions, FFT, top-k, gather, pooling, ...: 0 (:data:`ZERO_COST_OPS`).

The counter is vitbench's own ``TorchDispatchMode`` with one formula per op (never torch's
``FlopCounterMode``, whose op coverage changes between releases). An op is handled in this
order: a formula counts it (its sub-ops are not visited, so nothing is counted twice); an op on
the documented zero-cost list counts 0; a composite op is decomposed and its parts are visited;
anything left is *reported*: a :class:`RuntimeWarning` names it and :class:`MacsReport` lists
it. An op that looks like attention, a matmul or a convolution but has no formula is an error
(:class:`GmacsCounterError`): it would silently lower every count.

:func:`self_check` counts a reference ViT (patch stem, one block, final norm, head; fused and
explicit attention) and compares it with the closed form; the harness and ``vitbench flops``
run it before anything is counted, and :func:`count_macs` runs it once per process and device.
Records carry :data:`COUNTER_VERSION` in their ``gmacs_counter`` column.

RMSNorm has no fvcore convention: ``aten.rms_norm`` / ``aten._fused_rms_norm`` count 0 and raise
a :class:`RuntimeWarning` so the omission is not silent.
"""

from __future__ import annotations

import math
import re
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from vitbench.core.errors import VitbenchError
from vitbench.core.version import GMACS_COUNTER_VERSION
from vitbench.measure.modes import eval_mode

#: Identifies the counting rules; stored with every record (``gmacs_counter``). Bump it whenever
#: a formula or the op coverage changes what a model counts. Records without it were counted by
#: torch's ``FlopCounterMode`` (version 1), which missed attention on some torch releases.
COUNTER_VERSION = GMACS_COUNTER_VERSION

#: Norm ops without an fvcore convention; they count 0 and trigger a warning.
_UNCOUNTED_NORM_OPS: tuple[str, ...] = ("rms_norm", "_fused_rms_norm")

#: aten ops that cost 0 MACs in the fvcore convention (elementwise, shape, indexing, reductions,
#: FFT, sorting, RNG, creation). Only leaf ops are listed: composite ops are decomposed first.
ZERO_COST_OPS: frozenset[str] = frozenset(
    """
    __and__ __lshift__ __or__ __rshift__ __xor__ bitwise_left_shift bitwise_right_shift bitwise_xor
    abs abs_ add add_ addcdiv addcmul alias all allclose amax amin any arange argmax argmin argsort
    as_strided bernoulli bernoulli_ bitwise_and bitwise_not bitwise_or bucketize cat ceil chunk clamp
    clamp_ clamp_min clamp_max clone constant_pad_nd contiguous copy copy_ cos cumprod cumsum
    detach diag div div_ dropout elu embedding empty empty_like empty_strided eq equal erf exp exp_
    expand expand_as fill fill_ flatten flip floor floor_divide fmod full full_like gather ge gelu
    glu gt hardswish hardsigmoid index index_add index_add_ index_copy index_fill index_put
    index_put_ index_select is_nonzero isfinite isinf isnan item le leaky_relu lerp lift_fresh
    lift_fresh_copy linspace log log_softmax log1p log2 logical_and logical_not logical_or lt
    masked_fill masked_fill_ masked_scatter masked_select max max_pool2d max_pool2d_with_indices
    maximum mean min minimum mish mul mul_ multinomial nan_to_num narrow native_dropout ne neg
    new_empty new_empty_strided new_full new_ones new_zeros nonzero normal normal_ one_hot ones
    ones_like permute pow prod rand rand_like randint randn randn_like randperm reciprocal relu
    relu_ remainder repeat repeat_interleave reshape resize_ roll round rsqrt rsub scalar_tensor
    scatter scatter_ scatter_add scatter_add_ scatter_reduce select select_scatter sigmoid sign
    silu sin slice slice_scatter softmax softplus sort split split_with_sizes sqrt square squeeze
    stack std sub sub_ sum t tanh tile to topk transpose tril triu unbind unflatten unfold
    uniform_ unsqueeze unsafe_split var view view_as view_as_complex view_as_real where
    zero_ zeros zeros_like _local_scalar_dense _log_softmax _reshape_alias _safe_softmax _softmax
    _to_copy _unsafe_view _fft_c2c _fft_c2r _fft_r2c real imag angle complex polar conj
    _conj _neg_view _conj_physical resolve_conj resolve_neg avg_pool2d adaptive_avg_pool1d
    adaptive_avg_pool2d _adaptive_avg_pool2d upsample_bilinear2d upsample_bicubic2d
    upsample_nearest2d _upsample_bilinear2d_aa _upsample_bicubic2d_aa grid_sampler_2d
    linalg_vector_norm norm frobenius_norm _assert_async _assert_tensor_metadata sym_size
    sym_stride sym_numel sym_storage_offset _unique2 unique_dim unique_consecutive searchsorted
    count_nonzero isin logsumexp hardtanh clamp_max_ clamp_min_ _weight_norm_interface
    """.split()
)

#: Names of ops that must have a formula: missing one would silently drop real MACs.
_MUST_COUNT = re.compile(
    r"attention|sdpa|matmul|einsum|linear|conv|tensordot|bilinear|mm(_|$)|(^|_)(dot|mv)$"
)


class GmacsCounterError(VitbenchError):
    """The counter met an op it cannot count, or its self-check failed on this torch release."""


@dataclass(frozen=True)
class MacsReport:
    """What one counted forward pass did.

    Attributes:
        total: MACs of the whole batch (int), papers' convention.
        by_op: op name (e.g. ``"aten.linear"``) -> MACs counted at that op.
        uncounted: ``"aten.NAME"`` of ops that ran without a formula and are not on the
            zero-cost list (each counted 0 and warned about); empty when the count is complete.
    """

    total: int
    by_op: dict[str, int] = field(default_factory=dict)
    uncounted: tuple[str, ...] = ()


def _shape(x: Any) -> tuple[int, ...]:
    return tuple(int(d) for d in x.shape)


def _numel(x: Any) -> int:
    return math.prod(_shape(x))


def _first_tensor(out: Any) -> Any:
    return out[0] if isinstance(out, (tuple, list)) else out


def _arg(args: tuple[Any, ...], kwargs: dict[str, Any], pos: int, name: str, default: Any = None) -> Any:
    """Argument ``name`` of an aten call, given positionally at ``pos`` or by keyword."""
    if len(args) > pos:
        return args[pos]
    return kwargs.get(name, default)


Formula = Callable[[tuple[Any, ...], dict[str, Any], Any], int]


def _contract(pos: int) -> Formula:
    """Matmul-like op: MACs = output elements x contracted length (``args[pos].shape[-1]``)."""

    def formula(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> int:
        a = args[pos]
        k = _shape(a)[-1] if a.dim() >= 1 else 1
        return _numel(_first_tensor(out)) * k

    return formula


def _linear(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> int:
    """``linear(input, weight [out, in], bias)``: output elements x in_features."""
    return _numel(out) * _shape(args[1])[-1]


def _addbmm(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> int:
    """``addbmm(bias, b1 [B, n, k], b2 [B, k, m])``: B x n x k x m."""
    b, n, k = _shape(args[1])
    return b * n * k * _shape(args[2])[-1]


def _dot(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> int:
    return _numel(args[0])


def _conv(transposed_pos: int | None, transposed: bool = False) -> Formula:
    """Conv formula after fvcore's handle: output (input if transposed) elements x Cin/groups x kernel."""

    def formula(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> int:
        x, w = args[0], args[1]
        is_t = transposed
        if transposed_pos is not None:
            is_t = bool(_arg(args, kwargs, transposed_pos, "transposed", False))
        per_out = math.prod(_shape(w)[1:])
        if is_t:  # weight [Cin, Cout/groups, k...]
            return _numel(x) * per_out
        return _numel(_first_tensor(out)) * per_out

    return formula


def _attention_bhle(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> int:
    """SDPA ops with ``q [..., Lq, E]``, ``k [..., Lk, E]``, ``v [..., Lk, Ev]``."""
    q, k, v = args[0], args[1], args[2]
    return math.prod(_shape(q)[:-1]) * _shape(k)[-2] * (_shape(q)[-1] + _shape(v)[-1])


def _attention_blhe(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> int:
    """Flash/efficient kernels with ``q [B, Lq, H, E]``, ``k [B, Lk, Hk, E]``, ``v [B, Lk, Hk, Ev]``."""
    q, k, v = args[0], args[1], args[2]
    return math.prod(_shape(q)[:-1]) * _shape(k)[1] * (_shape(q)[-1] + _shape(v)[-1])


def _affine_norm(weight_pos: int) -> Formula:
    """Norm formula after fvcore's ``norm_flop_counter``: 5 MACs per element with affine weight, else 4."""

    def formula(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> int:
        weight = _arg(args, kwargs, weight_pos, "weight")
        return (5 if weight is not None else 4) * _numel(args[0])

    return formula


def _batch_norm(training_pos: int | None) -> Formula:
    """BatchNorm after fvcore's ``batchnorm_flop_jit``: eval 2 (affine) / 1 MACs per element; train 5 / 4."""

    def formula(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> int:
        weight = _arg(args, kwargs, 1, "weight")
        training = training_pos is not None and bool(_arg(args, kwargs, training_pos, "training", False))
        if training:
            return (5 if weight is not None else 4) * _numel(args[0])
        return (2 if weight is not None else 1) * _numel(args[0])

    return formula


def _zero(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> int:
    return 0


_SDPA_BHLE = (
    "scaled_dot_product_attention",
    "_scaled_dot_product_attention_math",
    "_scaled_dot_product_attention_math_for_mps",
    "_scaled_dot_product_flash_attention",
    "_scaled_dot_product_flash_attention_for_cpu",
    "_scaled_dot_product_efficient_attention",
    "_scaled_dot_product_cudnn_attention",
    "_scaled_dot_product_fused_attention_overrideable",
)
_SDPA_BLHE = ("_flash_attention_forward", "_efficient_attention_forward")

#: aten op name -> formula (MACs). Attention op names per backend: see the module docstring.
FORMULAS: dict[str, Formula] = {
    "mm": _contract(0),
    "bmm": _contract(0),
    "matmul": _contract(0),
    "addmm": _contract(1),
    "addmm_": _contract(1),
    "baddbmm": _contract(1),
    "baddbmm_": _contract(1),
    "mv": _contract(0),
    "addmv": _contract(1),
    "addbmm": _addbmm,
    "dot": _dot,
    "vdot": _dot,
    "linear": _linear,
    "convolution": _conv(6),
    "_convolution": _conv(6),
    "conv1d": _conv(None),
    "conv2d": _conv(None),
    "conv3d": _conv(None),
    "conv_transpose1d": _conv(None, transposed=True),
    "conv_transpose2d": _conv(None, transposed=True),
    "conv_transpose3d": _conv(None, transposed=True),
    "layer_norm": _affine_norm(2),  # (input, normalized_shape, weight, bias, ...)
    "native_layer_norm": _affine_norm(2),
    "group_norm": _affine_norm(2),  # (input, num_groups, weight, bias, ...)
    "native_group_norm": _affine_norm(1),  # (input, weight, bias, N, C, HxW, ...)
    "instance_norm": _affine_norm(1),  # (input, weight, bias, rm, rv, use_stats, ...)
    "batch_norm": _batch_norm(5),  # (input, weight, bias, rm, rv, training, ...)
    "native_batch_norm": _batch_norm(5),
    "_native_batch_norm_legit": _batch_norm(5),
    "_native_batch_norm_legit_no_training": _batch_norm(None),
    **{name: _attention_bhle for name in _SDPA_BHLE},
    **{name: _attention_blhe for name in _SDPA_BLHE},
    **{name: _zero for name in _UNCOUNTED_NORM_OPS},
}


_NORM_OPS = frozenset(
    {"layer_norm", "native_layer_norm", "group_norm", "native_group_norm", "instance_norm", "batch_norm"}
    | {"native_batch_norm", "_native_batch_norm_legit", "_native_batch_norm_legit_no_training"}
    | set(_UNCOUNTED_NORM_OPS)
)


def op_kind(op: str) -> str:
    """Release-independent kind of a counted op: ``attention``, ``conv``, ``norm`` or ``matmul``.

    Which aten op carries a layer's MACs changes between torch releases (``aten.linear`` under
    ``inference_mode`` on torch 2.14, ``aten.addmm`` elsewhere); the kind does not.

    Args:
        op: an op name as in :attr:`MacsReport.by_op` (``"aten.linear"``) or a bare aten name.
    """
    name = op.rpartition(".")[2]
    if name in _SDPA_BHLE or name in _SDPA_BLHE:
        return "attention"
    if name in _NORM_OPS:
        return "norm"
    if "conv" in name:
        return "conv"
    return "matmul"


def macs_by_kind(by_op: dict[str, int]) -> dict[str, int]:
    """Sum :attr:`MacsReport.by_op` by :func:`op_kind` (kinds with 0 MACs left out)."""
    out: Counter[str] = Counter()
    for op, macs in by_op.items():
        out[op_kind(op)] += macs
    return {kind: int(v) for kind, v in sorted(out.items()) if v}


class _MacCounter(TorchDispatchMode):
    """Counts MACs per op with :data:`FORMULAS`; see the module docstring for the rules."""

    def __init__(self) -> None:
        super().__init__()
        self.by_op: Counter[str] = Counter()
        self.uncounted: Counter[str] = Counter()

    def __torch_dispatch__(
        self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None
    ) -> Any:
        kwargs = kwargs or {}
        packet = str(func.overloadpacket)  # e.g. "aten.linear"
        namespace, _, name = packet.rpartition(".")
        if namespace == "aten" and name in FORMULAS:
            out = func(*args, **kwargs)  # the mode is off inside: sub-ops are not visited
            self.by_op[packet] += FORMULAS[name](args, kwargs, out)
            if name in _UNCOUNTED_NORM_OPS:
                self.uncounted[packet] += 1
            return out
        if namespace == "aten" and name in ZERO_COST_OPS:
            return func(*args, **kwargs)
        with self:  # a composite op: count its parts
            out = func.decompose(*args, **kwargs)
        if out is not NotImplemented:
            return out
        if _MUST_COUNT.search(name):
            raise GmacsCounterError(
                f"GMACs: {packet} has no MAC formula on torch {torch.__version__} and would count 0; "
                "use a torch release listed in vitbench's tested range or add the op to "
                "vitbench.measure.gmacs.FORMULAS"
            )
        self.uncounted[packet] += 1
        return func(*args, **kwargs)


def _as_tuple(inputs: torch.Tensor | Sequence[Any]) -> tuple[Any, ...]:
    """Positional forward arguments from a tensor or a sequence of arguments."""
    if isinstance(inputs, torch.Tensor):
        return (inputs,)
    return tuple(inputs)


def _count(model: nn.Module, inputs: torch.Tensor | Sequence[Any]) -> MacsReport:
    """One forward (eval, inference mode) under the counter; no self-check, no warnings."""
    args = _as_tuple(inputs)
    counter = _MacCounter()
    with eval_mode(model), torch.inference_mode(), counter:
        model(*args)
    by_op = {op: int(v) for op, v in sorted(counter.by_op.items())}
    return MacsReport(sum(by_op.values()), by_op, tuple(sorted(counter.uncounted)))


def count_macs_report(model: nn.Module, inputs: torch.Tensor | Sequence[Any]) -> MacsReport:
    """Count one forward pass and say what could not be counted.

    Runs :func:`self_check` first (once per process and device). Ops without a formula that are
    not on the zero-cost list raise a :class:`RuntimeWarning` naming them.

    Args:
        model: the network; run once in eval mode under ``torch.inference_mode()``, its
            train/eval flags restored afterwards. Not moved or otherwise modified.
        inputs: a tensor (e.g. ``[1, 3, 224, 224]`` float) or a tuple of positional arguments,
            already on the model's device.

    Returns:
        The :class:`MacsReport` (MACs for the whole batch).

    Raises:
        GmacsCounterError: the self-check fails on this torch release, or an attention-,
            matmul- or convolution-like op without a formula ran.
    """
    args = _as_tuple(inputs)
    first = next((a for a in args if isinstance(a, torch.Tensor)), None)
    self_check(first.device if first is not None else "cpu")
    report = _count(model, args)
    if report.uncounted:
        warnings.warn(
            f"GMACs: {', '.join(report.uncounted)} ran without a MAC formula (not on the zero-cost "
            "list); counted as 0",
            RuntimeWarning,
            stacklevel=2,
        )
    return report


def gmacs_by_op(model: nn.Module, inputs: torch.Tensor | Sequence[Any]) -> dict[str, int]:
    """MACs per aten op over one forward pass, for debugging the total.

    Args:
        model: the network; run once in eval mode under ``torch.inference_mode()``, its
            train/eval flags restored afterwards.
        inputs: a tensor (e.g. ``[1, 3, 224, 224]`` float) or a tuple of positional arguments,
            already on the model's device.

    Returns:
        Op name (e.g. ``"aten.linear"``, ``"aten.layer_norm"``) -> MACs (int) in the papers'
        convention, under the op that carried them on this torch release. Ops counted as 0 may
        be absent.

    Raises:
        GmacsCounterError: see :func:`count_macs_report`.
    """
    return dict(count_macs_report(model, inputs).by_op)


def count_macs(model: nn.Module, inputs: torch.Tensor | Sequence[Any]) -> int:
    """Total MACs of one forward pass in the papers' (fvcore) convention.

    Args:
        model: the network; run once in eval mode under ``torch.inference_mode()``, its
            train/eval flags restored afterwards. Not moved or otherwise modified.
        inputs: a tensor (e.g. ``[1, 3, 224, 224]`` float) or a tuple of positional arguments,
            already on the model's device. Use batch 1 for per-image numbers.

    Returns:
        Multiply-accumulates for the whole batch (int).

    Raises:
        GmacsCounterError: see :func:`count_macs_report`.
    """
    return count_macs_report(model, inputs).total


_CHECKED: set[str] = set()


def _reference_vit() -> tuple[nn.Module, int]:
    """A one-block timm ViT (32 px, 8 px patches, width 64, 2 heads, 10 classes) and its closed form."""
    from timm.models.vision_transformer import VisionTransformer

    gen = torch.Generator().manual_seed(0)
    model = VisionTransformer(
        img_size=32, patch_size=8, embed_dim=64, depth=1, num_heads=2, mlp_ratio=4.0, num_classes=10
    )
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.02)
    n, c = 17, 64
    stem = 16 * c * (3 * 8 * 8)
    closed = stem + vit_block_macs(n, n, c, c, 4 * c) + 5 * n * c + c * 10
    return model, closed


def self_check(device: str | torch.device = "cpu") -> None:
    """Count a reference ViT with fused and with explicit attention; stop if it is off.

    The reference (patch convolution, one pre-norm block, final LayerNorm, head) is counted on
    ``device`` and compared with its closed form :func:`vit_block_macs` + stem + norm + head.
    Runs once per process, device and torch release; later calls return at once.

    Args:
        device: where to run the reference (the device the counted models run on).

    Raises:
        GmacsCounterError: one line naming the torch release, the attention path and the ops
            that carried (or failed to carry) the MACs.
    """
    dev = torch.device(device)
    tag = f"{dev.type}:{torch.__version__}"
    if tag in _CHECKED:
        return
    model, closed = _reference_vit()
    model = model.to(dev)
    blocks: Any = model.blocks
    attn: Any = blocks[0].attn
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(1)).to(dev)
    saved = attn.fused_attn
    try:
        for fused in (True, False):
            attn.fused_attn = fused
            try:
                report = _count(model, x)
            except GmacsCounterError as exc:
                raise GmacsCounterError(f"GMACs self-check failed: {exc}") from None
            if report.total != closed:
                ops = ", ".join(f"{op}={v}" for op, v in report.by_op.items())
                extra = f"; ops without a formula: {', '.join(report.uncounted)}" if report.uncounted else ""
                raise GmacsCounterError(
                    f"GMACs self-check failed on torch {torch.__version__} ({dev.type}, "
                    f"{'fused' if fused else 'explicit'} attention): the reference ViT counts "
                    f"{report.total} MACs, its closed form {closed} (counted: {ops}){extra}; "
                    "use a torch release in vitbench's tested range"
                )
    finally:
        attn.fused_attn = saved
    _CHECKED.add(tag)


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
