"""DiffRate: prune-then-merge with per-block compression rates (Chen et al., ICCV 2023).

"DiffRate: Differentiable Compression Rate for Efficient Vision Transformers" (official code:
OpenGVLab/DiffRate, ``DiffRate/patch/deit.py`` and ``mae.py`` ``DiffRateBlock`` /
``DiffRateAttention`` in eval mode, ``DiffRate/merge.py`` ``get_merge_func``; the searched rates in
``compression_rate.json``). Inference with fixed rates: block ``i`` has two kept-token counts,
``prune[i]`` and ``merge[i]`` (the official ``prune_kept_num`` / ``merge_kept_num``, the class
token included). With ``N`` tokens entering the block:

1. attention with proportional attention (``log(size)`` added to the logits, sizes 1 before any
   merge), residual;
2. importance of each image token: the class token's attention to it, averaged over heads; the
   image tokens are sorted by descending importance behind the prefix tokens;
3. prune: the first ``P = min(N, prune[i])`` sorted tokens are kept (sizes follow);
4. merge, when ``M = min(P, merge[i]) < P``: the tokens ``M..P`` (the least important kept ones)
   each merge into their most cosine-similar token among the first ``M`` (similarity of the
   block's residual stream ``x``, L2-normalised; prefix tokens never receive a merge); the merged
   token is the *unweighted* mean of itself and its sources (``scatter_reduce(mean)``,
   ``include_self``), and its size becomes its own size plus ``size_src * similarity`` of each
   source (the official "similarity-weighted" proportional attention);
5. MLP on the ``M`` tokens.

A block with ``M = N`` runs timm's block as it is, with the proportional-attention bias once
tokens carry sizes (the official sorts tokens there, which changes nothing but their order). The
classifier must read the class token: the official MAE patch pools the image tokens weighted by
the similarity-weighted sizes (``mae.py``), which are not patch counts and are not reproduced.
``selection="random"``: seeded uniform importances and a uniform merge partner among the first
``M`` image tokens; the counts, the size update (with the similarity of the chosen pair) and the
mean merge stay the same.

The rates the authors searched (DeiT-T/S/B; MAE-B/L/H) are card data (``methods/diffrate.yaml``
``published_rates``), chosen by ``target`` (the GMACs target they were searched for). Elsewhere
the rates come from the differentiable search (:mod:`vitbench.methods.ratesearch`, run by
``vitbench finetune --method diffrate``), stored as an artifact of per-block kept counts, or are
given as counts or constant rates.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from importlib import resources
from typing import Any, ClassVar

import torch
import yaml
from torch import nn

from vitbench.core.errors import VitbenchError
from vitbench.measure.gmacs import vit_dims, vit_schedule_macs
from vitbench.methods.base import Conformance, register
from vitbench.methods.patching.patch import (
    CountingMixin,
    ForwardState,
    Handle,
    check_vit,
    input_tokens,
    patch_blocks,
    prefix_tokens,
    split_qkv,
)
from vitbench.methods.patching.stages import stage_blocks, stage_schedule
from vitbench.methods.ratesearch import (
    FLOPS_WEIGHT,
    RatePart,
    flops_loss,
    official_gflops,
    search_block,
    search_gflops,
)
from vitbench.methods.requirements import Requirements, model_label
from vitbench.methods.trainable import INIT, PART, TrainableMethod, check_meta, load_strict, model_shape
from vitbench.store import artifacts

#: ``target`` value of the uncompressed model (every block keeps every token).
NONE = "none"

#: Key of the per-token attention weights in ``ForwardState.extra``. Not ``"size"``: they are not
#: patch counts (pruned tokens are dropped and a merged source adds ``size * similarity``), so
#: :attr:`Handle.token_sizes` stays ``None``.
WEIGHT = "diffrate_size"

#: How to get rates for a model the authors did not publish rates for (the refusal's fix).
RATES_FIX = "give per-block kept counts prune=[...] merge=[...] or constant rates prune_rate=/merge_rate="


@functools.cache
def published_rates() -> dict[str, dict[str, tuple[tuple[int, ...], tuple[int, ...]]]]:
    """The authors' searched rates from the card: timm architecture -> target -> (prune, merge).

    Read from ``published_rates`` of ``vitbench/cards/methods/diffrate.yaml`` (transcribed from
    ``compression_rate.json`` of OpenGVLab/DiffRate; the card names the commit). Only entries
    with a ``timm`` architecture are returned (the MAE fine-tuned classifiers have none).
    """
    path = resources.files("vitbench") / "cards" / "methods" / "diffrate.yaml"
    card = yaml.safe_load(path.read_text())
    out: dict[str, dict[str, tuple[tuple[int, ...], tuple[int, ...]]]] = {}
    for entry in (card.get("published_rates") or {}).get("models", {}).values():
        arch = entry.get("timm")
        if not arch:
            continue
        out[arch] = {
            str(t): (tuple(int(v) for v in r["prune"]), tuple(int(v) for v in r["merge"]))
            for t, r in entry["targets"].items()
        }
    return out


def block_counts(n: int, prune: int, merge: int) -> tuple[int, int]:
    """``(P, M)``: tokens after pruning and after merging in a block entered by ``n`` tokens.

    The official inference slices ``x[:, :prune]`` (all tokens when ``prune >= n``) and merges only
    when ``merge < P``: ``P = min(n, prune)``, ``M = min(P, merge)``.
    """
    p = min(n, prune)
    return p, min(p, merge)


def diffrate_schedule(n0: int, prune: tuple[int, ...], merge: tuple[int, ...]) -> tuple[list[int], list[int]]:
    """Tokens (prefix included) entering the attention and the MLP of each block."""
    attn, mlp = [], []
    n = n0
    for pk, mk in zip(prune, merge):
        attn.append(n)
        n = block_counts(n, pk, mk)[1]
        mlp.append(n)
    return attn, mlp


def rate_counts(
    n0: int, prefix: int, depth: int, prune_rate: float, merge_rate: float
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Per-block kept counts of constant compression rates (the paper's alpha_p, alpha_m).

    Block 0 keeps every token (the official search never compresses it); block ``i > 0`` entered
    by ``n`` image tokens prunes ``floor(prune_rate * n)`` of them and merges
    ``floor(merge_rate * n) - floor(prune_rate * n)`` more. Counts include the prefix tokens.
    """
    prune, merge = [n0], [n0]
    n = n0 - prefix
    for _ in range(1, depth):
        prune.append(prefix + n - math.floor(prune_rate * n))
        n -= math.floor(merge_rate * n)
        merge.append(prefix + n)
    return tuple(prune), tuple(merge)


@dataclasses.dataclass(frozen=True)
class DiffRateParams:
    """DiffRate native parameters; explicit counts win over rates, rates over ``target``.

    Attributes:
        target: a published operating point of the model: the GMACs target the authors searched
            its rates for (``2.9`` for DeiT-S, see the card's ``published_rates``), or ``none``
            (no compression); on other models the GMACs target of a rate search. Empty: not given
            (the keep ratio mapping fills it in).
        prune: per block, tokens kept after pruning, prefix tokens included (the official
            ``prune_kept_num``); with ``merge``.
        merge: per block, tokens kept after merging, prefix tokens included (``merge_kept_num``).
        prune_rate: constant pruning rate alpha_p in [0, 1) of every block after block 0.
        merge_rate: constant compression rate alpha_m in [prune_rate, 1): pruned plus merged.
        artifact: searched rates: a file in the artifact folders or a path (``vitbench finetune
            --method diffrate``), or ``init`` (the search's untrained start; set automatically
            where the rates are given or published, so no artifact is looked up).
    """

    target: str = ""
    prune: tuple[int, ...] = ()
    merge: tuple[int, ...] = ()
    prune_rate: float = 0.0
    merge_rate: float = 0.0
    artifact: str = ""

    def __post_init__(self) -> None:
        if len(self.prune) != len(self.merge):
            raise ValueError(
                f"prune has {len(self.prune)} entries and merge {len(self.merge)}; give one kept count "
                "per block in both"
            )
        if any(v < 1 for v in (*self.prune, *self.merge)):
            raise ValueError(f"kept counts must be >= 1, got prune={self.prune} merge={self.merge}")
        if not 0.0 <= self.prune_rate <= self.merge_rate < 1.0:
            raise ValueError(
                f"rates need 0 <= prune_rate <= merge_rate < 1, got prune_rate={self.prune_rate} "
                f"merge_rate={self.merge_rate}; e.g. prune_rate=0.1 merge_rate=0.25"
            )

    @property
    def explicit(self) -> bool:
        """Per-block counts are given."""
        return bool(self.prune)

    @property
    def rated(self) -> bool:
        """Constant rates are given (and no counts)."""
        return not self.explicit and self.merge_rate > 0.0


def published_for(model: nn.Module, target: str) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
    """The published ``(prune, merge)`` counts of ``model`` at ``target``, if any (native grid only)."""
    table = published_rates().get(model_label(model), {})
    counts = table.get(target)
    if counts is None:
        return None
    depth = len(check_vit(model, DiffRate.name))
    if input_tokens(model) != max(counts[0]) or len(counts[0]) != depth:
        return None
    return counts


def _no_rates(model: nn.Module, target: str) -> str:
    """One line: no rates for ``model`` at ``target``, naming the fixes (the search first)."""
    arch = model_label(model)
    table = published_rates().get(arch)
    where = (
        f"published for {arch} at its native size: use one of {', '.join(table)} or none"
        if table
        else f"published only for {', '.join(sorted(published_rates()))}"
    )
    return (
        f"diffrate has no rates for {arch} at target {target or '(none given)'} ({where}); search them with "
        f"`vitbench finetune --method diffrate --model {arch} --set target={target or '<GMACs>'}`, "
        f"or {RATES_FIX}"
    )


def load_parts(model: nn.Module, params: DiffRateParams) -> list[RatePart] | None:
    """The search's parts of blocks 1..depth-1: fresh for ``artifact=init``, loaded from an artifact file.

    ``None`` when ``params.artifact`` is empty.

    Raises:
        VitbenchError: the artifact is missing, foreign, or for another model shape.
    """
    ref = params.artifact
    if not ref:
        return None
    depth = len(check_vit(model, DiffRate.name))
    n0, p = input_tokens(model), prefix_tokens(model)
    parts = [RatePart(n0 - p, p) for _ in range(1, depth)]
    if ref != INIT:
        path = artifacts.resolve(ref)
        tensors, meta = artifacts.load(path)
        check_meta(DiffRate.name, path.name, meta, model_shape(model), depth - 1)
        for s, part in enumerate(parts):
            sub = {k.split(".", 2)[2]: v for k, v in tensors.items() if k.startswith(f"part.{s}.")}
            load_strict(part, sub, f"{path.name} part {s}")
    return parts


def part_counts(n0: int, parts: list[RatePart]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Per-block kept counts of searched parts (block 0 keeps all ``n0`` tokens)."""
    prune = (n0, *(int(part.counts[0]) for part in parts))
    merge = (n0, *(int(part.counts[1]) for part in parts))
    return prune, merge


def resolve_counts(
    model: nn.Module, params: DiffRateParams, parts: list[RatePart] | None = None
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Per-block ``(prune, merge)`` kept counts, prefix included, for ``model``'s input.

    Precedence: explicit counts, constant rates, searched rates (``artifact`` file), ``target``
    none, the published rates at ``target``, the untrained search (``artifact=init``).

    Raises:
        VitbenchError: no rates (one line naming the search and the other fixes), counts of
            another depth, or counts that leave no image token.
    """
    depth = len(check_vit(model, DiffRate.name))
    n0, p = input_tokens(model), prefix_tokens(model)
    if params.explicit:
        if len(params.prune) != depth:
            raise VitbenchError(
                f"diffrate prune/merge have {len(params.prune)} entries; the model has {depth} blocks"
            )
        low = min(params.merge + params.prune)
        if low <= p:
            raise VitbenchError(
                f"diffrate kept count {low} leaves no image token ({p} prefix tokens); keep at least {p + 1}"
            )
        return params.prune, params.merge
    if params.rated:
        return rate_counts(n0, p, depth, params.prune_rate, params.merge_rate)
    if params.artifact and params.artifact != INIT:
        return part_counts(n0, parts if parts is not None else load_parts(model, params) or [])
    if params.target == NONE:
        return (n0,) * depth, (n0,) * depth
    published = published_for(model, params.target)
    if published is not None:
        return published
    if params.artifact == INIT:
        return part_counts(n0, parts if parts is not None else load_parts(model, params) or [])
    raise VitbenchError(_no_rates(model, params.target))


@dataclasses.dataclass
class DiffRateState(ForwardState):
    """:class:`ForwardState` plus the per-block kept counts and the search's settings.

    Attributes:
        prune: per block, tokens kept after pruning (prefix included).
        merge: per block, tokens kept after merging.
        search: the search's parts are attached: a training-mode forward runs the search.
        dims: (embed dim, patch pixels x channels, classes) for the search's GFLOPs.
    """

    prune: tuple[int, ...] = ()
    merge: tuple[int, ...] = ()
    search: bool = False
    dims: tuple[int, int, int] = (0, 0, 0)


def importance(qkv: torch.Tensor, attn: Any, size: torch.Tensor | None, prefix: int) -> torch.Tensor:
    """The class token's attention to every image token, averaged over heads: [B, n].

    Args:
        qkv: [B, N, 3 * attn_dim] the block's captured ``attn.qkv`` output.
        attn: the timm ``Attention`` (heads, ``q_norm``/``k_norm``, ``scale``).
        size: [B, N, 1] token sizes or None (all 1): ``log(size)`` is added to the logits.
        prefix: prefix tokens (token 0 is the class token).
    """
    q, k, _ = split_qkv(qkv, attn)  # [B, H, N, d]
    logits = (q[:, :, :1] @ k.transpose(-2, -1))[:, :, 0] * attn.scale  # [B, H, N]
    if size is not None:
        logits = logits + size.log()[:, None, :, 0].to(logits.dtype)
    return logits.softmax(dim=-1)[:, :, prefix:].mean(dim=1)


def prune_order(score: torch.Tensor, prefix: int, keep: int) -> torch.Tensor:
    """Positions [B, keep] of the tokens a block keeps: the prefix, then image tokens by descending ``score``.

    ``score`` [B, n] (image tokens); the official ``torch.sort(cls_attn, descending=True)``.
    """
    order = torch.sort(score, dim=-1, descending=True).indices + prefix
    head = torch.arange(prefix, device=score.device).expand(score.shape[0], prefix)
    return torch.cat([head, order], dim=1)[:, :keep]


def match(
    x: torch.Tensor, keep: int, prefix: int, partner: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Destination of each token ``keep..`` of ``x`` [B, P, C] among tokens ``prefix..keep-1``.

    Official ``get_merge_func``: cosine similarity of ``x`` (L2-normalised) between the sources
    (tokens ``keep..P-1``) and the destinations (tokens ``0..keep-1``), prefix columns ``-inf``,
    best destination per source. ``partner`` [B, P - keep] (random selection) fixes the
    destinations instead; the similarity is then that of the chosen pair.

    Returns:
        ``(node_max [B, P - keep], node_idx [B, P - keep])``: similarity to and index of the
        destination.
    """
    with torch.no_grad():  # the official matching runs on a detached metric under no_grad
        metric = x / x.norm(dim=-1, keepdim=True)
        src, dst = metric[:, keep:], metric[:, :keep]
        if partner is None:
            sim = src @ dst.transpose(-1, -2)  # [B, P - keep, keep]
            sim[..., :prefix] = -math.inf
            return sim.max(dim=-1)
        chosen = dst.gather(1, partner[..., None].expand(-1, -1, dst.shape[-1]))
        return (src * chosen).sum(dim=-1), partner


def merge_into(
    x: torch.Tensor, size: torch.Tensor, keep: int, node_max: torch.Tensor, node_idx: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Merge tokens ``keep..`` of ``x`` [B, P, C] into their destinations ``node_idx`` (:func:`match`).

    Args:
        x: sorted tokens after pruning.
        size: [B, P, 1] their sizes.
        keep: M, the tokens that stay.
        node_max: [B, P - M] similarity of each source to its destination.
        node_idx: [B, P - M] destination of each source, in ``0..M-1``.

    Returns:
        ``(x [B, M, C], size [B, M, 1])``: each destination becomes the unweighted mean of itself and
        its sources (the official ``scatter_reduce`` mean with ``include_self``, computed as a sum
        over a count so that ONNX export keeps it a mean); its size adds
        ``size_src * node_max`` of every source.
    """
    c = x.shape[-1]
    # The mean as a sum over a count: torch.onnx (onnxscript's aten::scatter_reduce) exports
    # reduce="mean" as ScatterElements(reduction="none"), an overwrite, so an exported model would
    # replace each destination by one of its sources instead of averaging them.
    summed = x[:, :keep].scatter_reduce(1, node_idx[..., None].expand(-1, -1, c), x[:, keep:], reduce="sum")
    ones = torch.ones_like(size)
    count = ones[:, :keep].scatter_add(1, node_idx[..., None], ones[:, keep:])
    out = summed / count
    src_size = size[:, keep:] * node_max[..., None].to(size.dtype)
    new_size = size[:, :keep].scatter_reduce(1, node_idx[..., None], src_size, reduce="sum")
    return out, new_size


class DiffRateMixin(CountingMixin):
    """DiffRate block.

    Modifications to timm's ``Block.forward``:
        - proportional attention: log(token size) [B, 1, 1, N] goes to timm's attention as an
          additive ``attn_mask`` once tokens have been merged;
        - between the attention residual and the MLP, a block that compresses sorts the image
          tokens by the class token's attention (:func:`importance`, from the captured qkv, with
          q/k norms), keeps the first ``P`` and merges the last ``P - M`` of those into the first
          ``M`` (:func:`merge_into`); prefix tokens stay in front and never merge;
        - an external ``attn_mask`` is not supported; LayerScale (ls1/ls2) is kept (the official
          block has none, DeiT has none).
    """

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, **kw: Any) -> torch.Tensor:  # noqa: D102
        st: Any = self._vb_enter(x)
        if attn_mask is not None:
            raise VitbenchError(f"'{st.method}' does not support an attention mask; run without attn_mask")
        blk: Any = self
        i = self._vb_index
        if blk.training and st.search:  # the rate search (masks, nothing dropped)
            st.qkv.pop(i, None)
            return search_block(blk, x, st, getattr(blk, PART, None), match)
        size = st.extra.get(WEIGHT)
        bias = None if size is None else size.log()[:, None, None, :, 0].to(x.dtype)
        x = x + blk.drop_path1(blk.ls1(blk.attn(blk.norm1(x), attn_mask=bias, **kw)))
        qkv = st.qkv.pop(i, None)
        n, p = x.shape[1], st.prefix
        keep_p, keep_m = block_counts(n, st.prune[i], st.merge[i])
        if keep_m < n:
            if st.selection == "scored":
                assert qkv is not None
                with torch.no_grad():
                    score = importance(qkv, blk.attn, size, p)
            else:
                u = st.uniform(i, (n - p, 2), x.float())  # [B, n - p, 2]
                score = u[..., 0]
            idx = prune_order(score, p, keep_p)  # [B, P]
            x = x.gather(1, idx[..., None].expand(-1, -1, x.shape[-1]))
            if size is not None:
                size = size.gather(1, idx[..., None])
            if keep_m < keep_p:
                if size is None:
                    size = torch.ones_like(x[..., :1], dtype=torch.float32)
                partner = None
                if st.selection == "random":
                    draw = u[:, : keep_p - keep_m, 1]  # one draw per source, by rank
                    partner = p + (draw * (keep_m - p)).long().clamp_(max=keep_m - p - 1)
                node_max, node_idx = match(x, keep_m, p, partner)
                x, size = merge_into(x, size, keep_m, node_max, node_idx)
            st.extra[WEIGHT] = size
        return x + blk.drop_path2(blk.ls2(blk.mlp(blk.norm2(x))))


@register
class DiffRate(TrainableMethod):
    """DiffRate (ICCV'23): per-block prune-then-merge at searched compression rates.

    Trainable: ``vitbench finetune --method diffrate`` runs the differentiable rate search
    (:mod:`vitbench.methods.ratesearch`) and stores the searched rates as an artifact; models and
    targets with published rates need none.
    """

    name = "diffrate"
    Params = DiffRateParams
    #: the importance is the class token's attention row; proportional attention goes through
    #: timm's ``attn_mask``; the head must read the class token: the official MAE patch pools by
    #: its similarity-weighted sizes, which are not patch counts, so an average pool is refused
    requirements = Requirements(
        vit_blocks=True,
        attn_mask=True,
        class_token_head=True,
        uses=(
            "it ranks image tokens by the class token's attention row; the official MAE pooling weights "
            "tokens by similarity-weighted sizes, not patch counts"
        ),
    )
    knob: ClassVar[str] = "target"
    # explicit per-block counts, or constant rates, are used instead of the target
    replaces_knob: ClassVar[tuple[str, ...]] = ("prune", "merge", "prune_rate", "merge_rate")
    summary = (
        "prune by class attention, then merge into similar tokens, at searched per-block rates "
        "(Chen et al. 2023)"
    )
    #: proportional attention after the first merge; the class-attention row and the matching
    conformance = Conformance(
        changes_attention=True, gmacs_overhead=0.05, fast={"prune_rate": 0.1, "merge_rate": 0.25}
    )
    #: the search (official main.py): arch-lr 0.01, only the rates train, CE + 5 (GFLOPs - target)^2
    default_lr: ClassVar[float] = 0.01
    backbone_lr_scale: ClassVar[float] = 0.0
    loss_weights: ClassVar[dict[str, float]] = {"ratio": FLOPS_WEIGHT, "distill": 0.0, "token": 0.0}

    @classmethod
    def map_keep_ratio(cls, keep_ratio: float, model: nn.Module) -> dict[str, Any]:
        """``target``: the published operating point (or ``none``) whose GMACs are closest to EViT's.

        Keep 1.0 is ``none`` (no compression) on every model. On a model without published rates
        at its input size the target is EViT's GFLOPs at the keep ratio in the official counter's
        convention (4 significant digits), the GMACs target of a search.
        """
        if keep_ratio >= 1.0:
            return {"target": NONE, "prune": (), "merge": (), "prune_rate": 0.0, "merge_rate": 0.0}
        table = published_rates().get(model_label(model), {})
        n0, p = input_tokens(model), prefix_tokens(model)
        dim, attn_dim, hidden, depth = vit_dims(model)
        ea, em = stage_schedule(n0, p, depth, stage_blocks(depth), keep_ratio, fuse=True)
        if not table or any(published_for(model, t) is None for t in table):
            return {"target": f"{official_gflops(ea, em, n0, _dims(model)):.4g}"}
        goal = vit_schedule_macs(ea, em, dim, attn_dim, hidden)
        dense = vit_schedule_macs([n0] * depth, [n0] * depth, dim, attn_dim, hidden)
        best, best_err = NONE, abs(dense - goal)
        for target, (pr, me) in table.items():
            ta, tm = diffrate_schedule(n0, pr, me)
            err = abs(vit_schedule_macs(ta, tm, dim, attn_dim, hidden) - goal)
            if err < best_err:
                best, best_err = target, err
        return {"target": best}

    @classmethod
    def params_for(cls, keep_ratio: float, model: nn.Module, overrides: Any = None) -> Any:
        """As :meth:`Method.params_for`; rates that need no search get ``artifact=init``.

        Explicit counts, constant rates, ``target=none`` and published targets need no searched
        artifact, so the harness does not look one up; any other target leaves ``artifact`` empty
        (the harness finds the searched rates by key, or names the ``vitbench finetune`` command).
        """
        params = super().params_for(keep_ratio, model, overrides)
        known = params.explicit or params.rated or params.target == NONE
        if not params.artifact and (known or published_for(model, params.target) is not None):
            params = dataclasses.replace(params, artifact=INIT)
        return params

    @classmethod
    def setting(cls, params: Any) -> str:
        """``target=2.9``, ``prune_rate=0.1, merge_rate=0.25`` or the explicit per-block counts.

        ``, untrained`` marks counts that come from the search's untrained start (``artifact=init``
        at a target no model has published rates for: what ``vitbench flops`` and the throughput
        tools show for a model whose rates were not searched yet).
        """
        if params.explicit:
            prune, merge = (",".join(map(str, v)) for v in (params.prune, params.merge))
            return f"prune=[{prune}], merge=[{merge}]"
        if params.rated:
            return f"prune_rate={params.prune_rate:g}, merge_rate={params.merge_rate:g}"
        published = {t for table in published_rates().values() for t in table}
        untrained = params.artifact == INIT and params.target not in published | {NONE}
        return f"target={params.target or '-'}" + (", untrained" if untrained else "")

    @classmethod
    def apply(cls, model: nn.Module, params: Any, selection: str = "scored", seed: int = 0) -> Handle:
        """Patch every block with :class:`DiffRateMixin` (qkv captured where a block compresses).

        With ``artifact`` set (``init`` or a searched artifact) the search's parts go on blocks
        1..depth-1: a training-mode forward then runs the search.
        """
        parts = load_parts(model, params)
        prune, merge = resolve_counts(model, params, parts)
        depth = len(prune)
        st = DiffRateState(cls.name, prefix_tokens(model), selection, seed, depth, params=params)
        st.tokens = input_tokens(model)
        st.prune, st.merge = prune, merge
        st.search, st.dims = parts is not None, _dims(model)
        attn, mlp = diffrate_schedule(st.tokens, prune, merge)
        capture = {i for i in range(depth) if mlp[i] < attn[i]} if selection == "scored" else set()
        handle = patch_blocks(model, st, lambda i: DiffRateMixin, capture)
        blocks: Any = model.blocks
        device = next(model.parameters()).device
        for i, part in zip(range(1, depth), parts or []):
            setattr(blocks[i], PART, part.to(device).train(model.training))

            def undo(blk: nn.Module = blocks[i]) -> None:
                delattr(blk, PART)

            handle._undo.append(undo)
        return handle

    @classmethod
    def schedule(cls, model: nn.Module, params: Any) -> list[int]:
        """Tokens entering each block."""
        prune, merge = resolve_counts(model, params)
        return diffrate_schedule(input_tokens(model), prune, merge)[0]

    # -- the search (vitbench finetune) ------------------------------------------------------------

    @classmethod
    def part_blocks(cls, model: nn.Module, params: Any) -> list[int]:
        """Blocks 1..depth-1 (the official search never compresses block 0)."""
        return list(range(1, len(check_vit(model, cls.name))))

    @classmethod
    def new_part(cls, dim: int, gen: torch.Generator) -> nn.Module:
        """Not used: DiffRate's parts are sized by the image tokens, built by :func:`load_parts`.

        Raises:
            VitbenchError: always (the width alone does not size a part).
        """
        raise VitbenchError(
            "diffrate parts are sized by the model's image tokens; build them with load_parts"
        )

    @classmethod
    def aux_losses(cls, handle: Handle, feats: torch.Tensor, teacher_feats: torch.Tensor) -> dict[str, Any]:
        """``ratio``: ``(GFLOPs - target)^2`` of the expected counts (official ``loss_flops``); no token loss.

        Raises:
            VitbenchError: ``target`` is not a GMACs number (e.g. ``none``).
        """
        st: Any = handle.state
        try:
            target = float(st.params.target)
        except ValueError:
            raise VitbenchError(
                f"diffrate's search needs a GMACs target, got target={st.params.target!r}; "
                "pass --keep below 1 or --set target=<GMACs>"
            ) from None
        gflops = search_gflops(st.extra.get("search_counts", []), st.tokens, st.dims, st.depth)
        return {"ratio": flops_loss(gflops, target), "token": feats.new_zeros(()), "gflops": gflops.detach()}

    @classmethod
    def export(cls, model: nn.Module, params: Any, with_backbone: bool) -> dict[str, torch.Tensor]:
        """The searched parts with their kept counts; never the backbone (the search leaves it as it is)."""
        blocks: Any = check_vit(model, cls.name)
        for i in cls.part_blocks(model, params):
            getattr(blocks[i], PART).refresh()
        return super().export(model, params, False)


def _dims(model: nn.Module) -> tuple[int, int, int]:
    """(embed dim, patch pixels x input channels, classes) for the official GFLOPs formulas."""
    embed: Any = model.patch_embed  # type: ignore[union-attr]
    ph, pw = embed.patch_size
    chans = int(embed.proj.in_channels)
    return int(model.embed_dim), int(ph * pw * chans), int(getattr(model, "num_classes", 0) or 0)  # type: ignore[arg-type]


__all__ = [
    "NONE",
    "DiffRate",
    "DiffRateMixin",
    "DiffRateParams",
    "DiffRateState",
    "block_counts",
    "diffrate_schedule",
    "importance",
    "load_parts",
    "part_counts",
    "published_for",
    "match",
    "merge_into",
    "prune_order",
    "published_rates",
    "rate_counts",
]
