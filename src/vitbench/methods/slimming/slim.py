"""Physical slimming of timm ViT/DeiT models: the shared structure of every channel method.

API (stable; channel methods and the harness build on it):

* :class:`SlimPlan` (frozen): ``embed`` = kept embedding channels; ``blocks[i]`` =
  :class:`BlockPlan` with ``heads`` (kept head indices), ``qk`` (per kept head, its kept q/k
  channels inside the head; q and k are sliced alike), ``v`` (per kept head, its kept v
  channels) and ``mlp`` (kept hidden units). All indices refer to the model the plan is applied
  to; they are stored sorted. ``SlimPlan.identity(model)`` keeps everything;
  ``plan.to_dict()/from_dict()``, ``to_json()/from_json()`` serialise it (artifact metadata);
  ``outer.compose(inner)`` gives the plan on the original model equal to applying ``outer`` and
  then ``inner``.
* :func:`slim_model(model, plan) <slim_model>` returns a new, physically smaller model (deep
  copy; the input is never modified). Every block's attention becomes a :class:`SlimAttention`
  (a fused ``qkv`` Linear whose rows are ``[q (h*d_qk) | k (h*d_qk) | v (h*d_v)]``, each
  head-major, then ``proj`` Linear(h*d_v, E)); blocks stay timm ``Block`` objects, so LayerScale,
  drop-path and the token methods' block patches keep working. Works on timm ``Attention`` and on
  already slimmed models (iterative pruning). ``source_plan(slimmed)`` is the plan relative to
  the original model (composed across repeated slimming); the harness stores it with the
  weights (:mod:`vitbench.harness.pruned`), so a ``ChannelMethod.prune`` must return a model built
  by :func:`slim_model`.
* :func:`model_dims(model) <model_dims>` reads :class:`ModelDims` (E and per block h, d_qk, d_v,
  m) from a timm or slimmed model; :func:`dims_macs` is the closed-form fvcore-convention MAC
  count of those dims (tested against the real counter).

Constraints: within a block every kept head has the same d_qk and the same d_v (NViT and VTC-LFC
both produce this; per-head index sets may differ); at least one head, one q/k channel, one v
channel, one MLP unit and one embedding channel. Attention scale stays ``original_head_dim**-0.5``
after q/k channels are removed (NViT: fixed 64**-0.5; VTC-LFC: ``--keep-qk-scale``).
Unsupported (one-line error): qk_norm / scale_norm / gated attention, attention pooling heads.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vitbench.core.errors import VitbenchError

#: Attribute of a pruned model holding the per-block token schedule that goes with its channels
#: (VTC-LFC's LFE image-token counts); the harness stores it with the pruned weights.
TOKEN_CFG_ATTR = "vb_token_cfg"

# ---------------------------------------------------------------------------------------------
# plans


def _idx(values: Sequence[int], size: int, what: str) -> tuple[int, ...]:
    """Sorted unique ints in [0, size); one-line errors otherwise."""
    out = tuple(sorted(int(v) for v in values))
    if not out:
        raise VitbenchError(f"slim plan keeps no {what}; keep at least one")
    if len(set(out)) != len(out):
        raise VitbenchError(f"slim plan repeats an index in {what}: {list(out)}")
    if out[0] < 0 or out[-1] >= size:
        raise VitbenchError(f"slim plan index out of range in {what} (size {size}): {list(out)}")
    return out


@dataclasses.dataclass(frozen=True)
class BlockPlan:
    """What one block keeps (indices of the model the plan is applied to).

    Attributes:
        heads: kept head indices, sorted.
        qk: one tuple per kept head (same order as ``heads``): kept q/k channels inside it.
        v: one tuple per kept head: kept v channels inside it.
        mlp: kept MLP hidden units, sorted.
    """

    heads: tuple[int, ...]
    qk: tuple[tuple[int, ...], ...]
    v: tuple[tuple[int, ...], ...]
    mlp: tuple[int, ...]

    @property
    def dims(self) -> tuple[int, int, int, int]:
        """``(h, d_qk, d_v, m)`` after slimming."""
        return len(self.heads), len(self.qk[0]), len(self.v[0]), len(self.mlp)

    def to_dict(self) -> dict[str, Any]:
        """Plain lists (JSON)."""
        return {
            "heads": list(self.heads),
            "qk": [list(q) for q in self.qk],
            "v": [list(v) for v in self.v],
            "mlp": list(self.mlp),
        }

    @staticmethod
    def from_dict(d: dict[str, Any]) -> BlockPlan:
        """Inverse of :meth:`to_dict`."""
        return BlockPlan(
            tuple(int(h) for h in d["heads"]),
            tuple(tuple(int(i) for i in q) for q in d["qk"]),
            tuple(tuple(int(i) for i in v) for v in d["v"]),
            tuple(int(i) for i in d["mlp"]),
        )


@dataclasses.dataclass(frozen=True)
class SlimPlan:
    """Kept embedding channels and per-block :class:`BlockPlan` of a whole model."""

    embed: tuple[int, ...]
    blocks: tuple[BlockPlan, ...]

    @staticmethod
    def identity(model: nn.Module) -> SlimPlan:
        """The plan that keeps every unit of ``model``."""
        d = model_dims(model)
        blocks = tuple(
            BlockPlan(
                tuple(range(h)),
                tuple(tuple(range(dqk)) for _ in range(h)),
                tuple(tuple(range(dv)) for _ in range(h)),
                tuple(range(m)),
            )
            for h, dqk, dv, m in d.blocks
        )
        return SlimPlan(tuple(range(d.embed)), blocks)

    def dims(self) -> ModelDims:
        """Dimensions of the slimmed model (token counts are not part of a plan)."""
        return ModelDims(len(self.embed), tuple(b.dims for b in self.blocks))

    def validate(self, model: nn.Module) -> None:
        """Raise a one-line :class:`VitbenchError` unless the plan fits ``model``."""
        d = model_dims(model)
        if len(self.blocks) != len(d.blocks):
            raise VitbenchError(
                f"slim plan has {len(self.blocks)} blocks but the model has {len(d.blocks)}; "
                "build the plan from this model"
            )
        _idx(self.embed, d.embed, "embed")
        for i, (bp, (h, dqk, dv, m)) in enumerate(zip(self.blocks, d.blocks)):
            _idx(bp.heads, h, f"block {i} heads")
            _idx(bp.mlp, m, f"block {i} mlp")
            if len(bp.qk) != len(bp.heads) or len(bp.v) != len(bp.heads):
                raise VitbenchError(
                    f"slim plan block {i}: qk/v need one index tuple per kept head "
                    f"({len(bp.heads)} heads, {len(bp.qk)} qk, {len(bp.v)} v)"
                )
            for what, per_head, size in (("qk", bp.qk, dqk), ("v", bp.v, dv)):
                for j, sel in enumerate(per_head):
                    _idx(sel, size, f"block {i} head {bp.heads[j]} {what}")
                if len({len(s) for s in per_head}) != 1:
                    raise VitbenchError(
                        f"slim plan block {i}: kept heads differ in {what} width "
                        f"{[len(s) for s in per_head]}; keep the same count in every head"
                    )

    def compose(self, inner: SlimPlan) -> SlimPlan:
        """Plan on the original model equal to ``self`` followed by ``inner``.

        ``inner`` indexes the model that ``self`` produces.
        """
        if len(inner.blocks) != len(self.blocks):
            raise VitbenchError(
                f"cannot compose slim plans of {len(self.blocks)} and {len(inner.blocks)} blocks"
            )
        blocks = []
        for a, b in zip(self.blocks, inner.blocks):
            heads = tuple(a.heads[j] for j in b.heads)
            qk = tuple(tuple(a.qk[j][i] for i in b.qk[n]) for n, j in enumerate(b.heads))
            v = tuple(tuple(a.v[j][i] for i in b.v[n]) for n, j in enumerate(b.heads))
            blocks.append(BlockPlan(heads, qk, v, tuple(a.mlp[i] for i in b.mlp)))
        return SlimPlan(tuple(self.embed[i] for i in inner.embed), tuple(blocks))

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON)."""
        return {"embed": list(self.embed), "blocks": [b.to_dict() for b in self.blocks]}

    @staticmethod
    def from_dict(d: dict[str, Any]) -> SlimPlan:
        """Inverse of :meth:`to_dict`; one-line error for malformed input."""
        try:
            return SlimPlan(
                tuple(int(i) for i in d["embed"]), tuple(BlockPlan.from_dict(b) for b in d["blocks"])
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise VitbenchError(f"malformed slim plan ({type(exc).__name__}: {exc})") from None

    def to_json(self) -> str:
        """Compact JSON."""
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @staticmethod
    def from_json(text: str) -> SlimPlan:
        """Inverse of :meth:`to_json`."""
        return SlimPlan.from_dict(json.loads(text))


@dataclasses.dataclass(frozen=True)
class ModelDims:
    """Embedding width and per-block ``(heads, d_qk, d_v, mlp_hidden)``."""

    embed: int
    blocks: tuple[tuple[int, int, int, int], ...]


# ---------------------------------------------------------------------------------------------
# the slim attention


class SlimAttention(nn.Module):
    """Multi-head self-attention with per-block head count, q/k width and v width.

    Modifications (relative to timm ``Attention``): one ``qkv`` Linear(E, h*(2*d_qk + d_v)) with
    rows ``[q | k | v]`` (each head-major) replaces the uniform ``3*h*d`` layout; v heads may be
    narrower or wider than q/k heads, so ``proj`` is Linear(h*d_v, E); ``scale`` is given (the
    source model's ``head_dim**-0.5``, kept after q/k slimming as NViT and VTC-LFC do); no
    q/k norm, scale norm or gate. Fused SDPA is used when the source attention used it (SDPA
    accepts a v width different from q/k; its ``scale`` argument carries the kept scale).

    Shapes: input ``x`` [B, N, E] -> output [B, N, E].
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        qk_dim: int,
        v_dim: int,
        scale: float,
        qkv_bias: bool,
        proj_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        fused_attn: bool = True,
    ) -> None:
        super().__init__()
        self.num_heads, self.qk_dim, self.v_dim = num_heads, qk_dim, v_dim
        self.scale = float(scale)
        self.fused_attn = fused_attn
        self.qkv = nn.Linear(dim, num_heads * (2 * qk_dim + v_dim), bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(num_heads * v_dim, dim, bias=proj_bias)
        self.proj_drop = nn.Dropout(proj_drop)

    def split_heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``x`` [B, N, E] -> q, k [B, h, N, d_qk] and v [B, h, N, d_v] (unscaled)."""
        b, n, _ = x.shape
        h, dq, dv = self.num_heads, self.qk_dim, self.v_dim
        q, k, v = self.qkv(x).split([h * dq, h * dq, h * dv], dim=-1)
        q = q.reshape(b, n, h, dq).transpose(1, 2)
        k = k.reshape(b, n, h, dq).transpose(1, 2)
        v = v.reshape(b, n, h, dv).transpose(1, 2)
        return q, k, v

    def forward(
        self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, is_causal: bool = False
    ) -> torch.Tensor:
        """``x`` [B, N, E] -> [B, N, E]; ``attn_mask`` / ``is_causal`` as in timm ``Attention``."""
        b, n, _ = x.shape
        q, k, v = self.split_heads(x)
        if self.fused_attn:
            out = F.scaled_dot_product_attention(
                q,
                k,
                v,
                attn_mask=attn_mask,
                dropout_p=self.attn_drop.p if self.training else 0.0,
                is_causal=is_causal,
                scale=self.scale,
            )
        else:
            attn = (q * self.scale) @ k.transpose(-2, -1)
            if is_causal:
                attn = attn + attn.new_full((n, n), float("-inf")).triu_(1)
            elif attn_mask is not None:
                attn = (
                    attn.masked_fill(~attn_mask, float("-inf"))
                    if attn_mask.dtype == torch.bool
                    else attn + attn_mask
                )
            attn = self.attn_drop(attn.softmax(dim=-1))
            out = attn @ v
        out = out.transpose(1, 2).reshape(b, n, self.num_heads * self.v_dim)
        return self.proj_drop(self.proj(out))


# ---------------------------------------------------------------------------------------------
# reading dims


def _attn_layout(attn: Any, i: int) -> tuple[int, int, int, float]:
    """``(h, d_qk, d_v, scale)`` of a timm ``Attention`` or a :class:`SlimAttention`."""
    if isinstance(attn, SlimAttention):
        return attn.num_heads, attn.qk_dim, attn.v_dim, attn.scale
    qkv = getattr(attn, "qkv", None)
    if not isinstance(qkv, nn.Linear) or not hasattr(attn, "num_heads") or not hasattr(attn, "head_dim"):
        raise VitbenchError(
            f"block {i} attention is a {type(attn).__name__}; channel pruning supports timm Attention "
            "(fused qkv Linear) and slimmed models"
        )
    for part in ("q_norm", "k_norm", "norm"):
        if not isinstance(getattr(attn, part, nn.Identity()), nn.Identity):
            raise VitbenchError(
                f"block {i} attention has a {part}; channel pruning supports plain attention only"
            )
    if getattr(attn, "gate", None) is not None:
        raise VitbenchError(f"block {i} attention is gated; channel pruning supports plain attention only")
    h, d = int(attn.num_heads), int(attn.head_dim)
    if qkv.out_features != 3 * h * d:
        raise VitbenchError(f"block {i} qkv has {qkv.out_features} outputs, expected 3*{h}*{d}")
    return h, d, d, float(attn.scale)


def _blocks(model: nn.Module) -> Any:
    blocks = getattr(model, "blocks", None)
    if not isinstance(blocks, (nn.Sequential, nn.ModuleList)) or len(blocks) == 0:
        raise VitbenchError(
            f"channel pruning needs a timm VisionTransformer with `.blocks`; got {type(model).__name__}"
        )
    for i, blk in enumerate(blocks):
        mlp = getattr(blk, "mlp", None)
        if not (
            hasattr(blk, "norm1")
            and hasattr(blk, "attn")
            and isinstance(getattr(mlp, "fc1", None), nn.Linear)
            and isinstance(getattr(mlp, "fc2", None), nn.Linear)
        ):
            raise VitbenchError(
                f"channel pruning supports timm ViT blocks (norm1/attn/mlp.fc1/mlp.fc2); block {i} "
                f"is a {type(blk).__name__}"
            )
    if getattr(model, "attn_pool", None) is not None:
        raise VitbenchError("channel pruning does not support attention-pooling heads (global_pool='map')")
    return blocks


def model_dims(model: nn.Module) -> ModelDims:
    """:class:`ModelDims` of a timm ViT or a slimmed model."""
    blocks = _blocks(model)
    out = []
    for i, blk in enumerate(blocks):
        h, dqk, dv, _ = _attn_layout(blk.attn, i)
        out.append((h, dqk, dv, int(blk.mlp.fc1.out_features)))
    embed = int(blocks[0].mlp.fc2.out_features)
    return ModelDims(embed, tuple(out))


def supported(model: nn.Module) -> str | None:
    """``None`` when ``model`` can be slimmed, else the reason (for ``Method.supported``)."""
    try:
        model_dims(model)
    except VitbenchError as exc:
        return str(exc)
    return None


# ---------------------------------------------------------------------------------------------
# closed-form MACs


def dims_macs(
    dims: ModelDims,
    tokens: int,
    patches: int,
    patch_in: int,
    num_classes: int,
    heads_out: int = 1,
    final_norm_tokens: int | None = None,
    fc_norm: bool = False,
) -> int:
    """MACs of one image through a (slimmed) ViT in the fvcore convention (LayerNorm = 5/elem).

    Per block (N tokens, E, h, d_qk, d_v, m): ``5NE`` (norm1) + ``N*E*h*(2d_qk+d_v)`` (qkv) +
    ``N^2*h*(d_qk+d_v)`` (q k^T, attn v) + ``N*h*d_v*E`` (proj) + ``5NE`` (norm2) + ``2NEm``
    (fc1, fc2). Stem ``patches*patch_in*E`` (patch conv, ``patch_in`` = 3*p*p), tail
    ``5*final_norm_tokens*E`` (final norm; 0 tokens when the model pools first) + ``5E`` with
    ``fc_norm`` + ``heads_out*E*num_classes`` (head, and head_dist for distilled models).
    """
    e, n = dims.embed, tokens
    total = patches * patch_in * e
    for h, dqk, dv, m in dims.blocks:
        total += 5 * n * e + n * e * h * (2 * dqk + dv) + n * n * h * (dqk + dv) + n * h * dv * e
        total += 5 * n * e + 2 * n * e * m
    total += 5 * (n if final_norm_tokens is None else final_norm_tokens) * e
    total += 5 * e if fc_norm else 0
    return total + heads_out * e * num_classes


# ---------------------------------------------------------------------------------------------
# slimming


def _linear(
    lin: nn.Linear, out_idx: torch.Tensor | None = None, in_idx: torch.Tensor | None = None
) -> nn.Linear:
    w = lin.weight.detach()
    b = lin.bias.detach() if lin.bias is not None else None
    if out_idx is not None:
        w = w[out_idx]
        b = b[out_idx] if b is not None else None
    if in_idx is not None:
        w = w[:, in_idx]
    new = nn.Linear(w.shape[1], w.shape[0], bias=b is not None, device=w.device, dtype=w.dtype)
    with torch.no_grad():
        new.weight.copy_(w)
        if b is not None:
            new.bias.copy_(b)  # type: ignore[union-attr]
    new.train(lin.training)
    return new


def _param(p: torch.Tensor, idx: torch.Tensor, dim: int) -> nn.Parameter:
    return nn.Parameter(p.detach().index_select(dim, idx).clone(), requires_grad=p.requires_grad)


def _slice_norm(norm: nn.Module, idx: torch.Tensor, where: str) -> None:
    """Slice an embedding-wide norm in place (LayerNorm-like: ``weight``/``bias``/``normalized_shape``)."""
    if isinstance(norm, nn.Identity):
        return
    if not hasattr(norm, "normalized_shape"):
        raise VitbenchError(f"{where} is a {type(norm).__name__}; channel pruning supports LayerNorm only")
    norm.normalized_shape = (len(idx),)  # type: ignore[assignment]
    for name in ("weight", "bias"):
        p = getattr(norm, name, None)
        if p is not None:
            setattr(norm, name, _param(p, idx, 0))


def _slice_tokens(model: nn.Module, idx: torch.Tensor) -> None:
    for name in ("cls_token", "reg_token", "dist_token", "pos_embed"):
        p = getattr(model, name, None)
        if isinstance(p, torch.Tensor):
            setattr(model, name, _param(p, idx, p.ndim - 1))


def _slice_stem(model: nn.Module, idx: torch.Tensor) -> None:
    pe: Any = getattr(model, "patch_embed", None)
    proj = getattr(pe, "proj", None)
    if not isinstance(proj, nn.Conv2d):
        raise VitbenchError("channel pruning needs `patch_embed.proj` to be a Conv2d (timm PatchEmbed)")
    proj.weight = _param(proj.weight, idx, 0)
    if proj.bias is not None:
        proj.bias = _param(proj.bias, idx, 0)
    proj.out_channels = len(idx)
    _slice_norm(getattr(pe, "norm", nn.Identity()), idx, "patch_embed.norm")


def _slice_block(blk: Any, bp: BlockPlan, eidx: torch.Tensor, i: int) -> None:
    attn = blk.attn
    h, dqk, dv, scale = _attn_layout(attn, i)
    dev = attn.qkv.weight.device
    q_rows = [hd * dqk + j for hd, sel in zip(bp.heads, bp.qk) for j in sel]
    k_rows = [h * dqk + r for r in q_rows]
    v_rows = [2 * h * dqk + hd * dv + j for hd, sel in zip(bp.heads, bp.v) for j in sel]
    rows = torch.tensor(q_rows + k_rows + v_rows, dtype=torch.long, device=dev)
    v_cols = torch.tensor(
        [hd * dv + j for hd, sel in zip(bp.heads, bp.v) for j in sel], dtype=torch.long, device=dev
    )
    nh, nqk, nv, _ = bp.dims
    new = SlimAttention(
        len(eidx),
        nh,
        nqk,
        nv,
        scale,
        qkv_bias=attn.qkv.bias is not None,
        proj_bias=attn.proj.bias is not None,
        attn_drop=float(getattr(attn.attn_drop, "p", 0.0)),
        proj_drop=float(getattr(attn.proj_drop, "p", 0.0)),
        fused_attn=bool(getattr(attn, "fused_attn", True)),
    )
    new.qkv = _linear(attn.qkv, rows, eidx)
    new.proj = _linear(attn.proj, eidx, v_cols)
    new.train(attn.training)
    blk.attn = new.to(dev)
    midx = torch.tensor(bp.mlp, dtype=torch.long, device=dev)
    mlp = blk.mlp
    mlp.fc1 = _linear(mlp.fc1, midx, eidx)
    _slice_norm(getattr(mlp, "norm", nn.Identity()), midx, f"block {i} mlp.norm")
    mlp.fc2 = _linear(mlp.fc2, eidx, midx)
    _slice_norm(blk.norm1, eidx, f"block {i} norm1")
    _slice_norm(blk.norm2, eidx, f"block {i} norm2")
    for ls in ("ls1", "ls2"):
        mod = getattr(blk, ls, None)
        if mod is not None and hasattr(mod, "gamma"):
            mod.gamma = _param(mod.gamma, eidx, 0)


#: Attribute of a slimmed model holding its :class:`SlimPlan` relative to the unslimmed model.
PLAN_ATTR = "vb_slim_plan"


def source_plan(model: nn.Module) -> SlimPlan | None:
    """The plan that turns the original (unslimmed) model into ``model``; ``None`` if never slimmed."""
    plan = getattr(model, PLAN_ATTR, None)
    return plan if isinstance(plan, SlimPlan) else None


def slim_model(model: nn.Module, plan: SlimPlan) -> nn.Module:
    """A physically slimmed deep copy of ``model`` (``model`` itself is not modified).

    Args:
        model: a timm VisionTransformer (incl. distilled / register-token / LayerScale variants)
            or a model this function returned.
        plan: what to keep, indices relative to ``model``.

    Returns:
        The new model: every linear, norm, token and embedding that reads or writes the residual
        stream sliced to ``plan.embed`` (patch-embed conv rows, cls/reg/dist tokens, pos-embed,
        every norm, qkv input columns, proj output rows, LayerScale, fc1 input, fc2 output,
        final norm / fc_norm, head and head_dist input columns); per block the heads, q/k, v and
        MLP units of its :class:`BlockPlan`. ``embed_dim`` / ``num_features`` follow.
        ``source_plan(new)`` is the plan relative to the original model (``plan`` composed
        with the input's own, when the input was already slimmed): save it with the weights,
        rebuild with ``slim_model(original, source_plan(new))`` then ``load_state_dict``.
    """
    plan.validate(model)
    base = source_plan(model)
    new = copy.deepcopy(model)
    setattr(new, PLAN_ATTR, base.compose(plan) if base is not None else plan)
    blocks = _blocks(new)
    dev = blocks[0].mlp.fc1.weight.device
    eidx = torch.tensor(plan.embed, dtype=torch.long, device=dev)
    _slice_stem(new, eidx)
    _slice_tokens(new, eidx)
    for name in ("norm_pre", "norm", "fc_norm"):
        mod = getattr(new, name, None)
        if mod is not None:
            _slice_norm(mod, eidx, name)
    for i, (blk, bp) in enumerate(zip(blocks, plan.blocks)):
        _slice_block(blk, bp, eidx, i)
    for name in ("head", "head_dist"):
        mod = getattr(new, name, None)
        if isinstance(mod, nn.Linear):
            setattr(new, name, _linear(mod, None, eidx))
        elif mod is not None and not isinstance(mod, nn.Identity):
            raise VitbenchError(
                f"model.{name} is a {type(mod).__name__}; channel pruning supports a Linear head"
            )
    for attr in ("embed_dim", "num_features", "head_hidden_size"):
        if hasattr(new, attr):
            setattr(new, attr, len(eidx))
    return new


__all__ = [
    "TOKEN_CFG_ATTR",
    "BlockPlan",
    "ModelDims",
    "SlimAttention",
    "PLAN_ATTR",
    "SlimPlan",
    "dims_macs",
    "model_dims",
    "slim_model",
    "source_plan",
    "supported",
]
