"""VTC-LFC bottom-up cascade pruning (BCP): LFE token counts, then LFS channels, block by block.

Wang et al., "VTC-LFC: Vision Transformer Compression with Low-Frequency Components",
NeurIPS 2022 (official code: Daner-Wang/VTC-LFC, ``pruning/pruning_py/pruning_deit.py``,
``--prune-mode bcp``; see ``references/methods.md`` section 2.4).

For block l = 0 .. depth-1 on the current model M (already pruned in blocks < l):

* ``acc0`` = top-1 of M on a fixed calibration subset (official: 5000 random training images);
  per-block budget ``b = allowable_drop / depth`` accuracy points.
* Tokens (budget ``b * drop_for_token``): the image tokens kept after block l *and every later
  block* are set to ``max(n_l - p, lower)`` (``lower``: ``floor(n * 190/196)`` at block 0 -- at
  most 6 of 196 tokens there -- else 0). ``p`` starts at 1; while the drop stays within budget,
  ``p <- min(ceil((2 - drop/b_tok) p), ceil(p + count/3))``; on the first excess
  ``p <- max(int((2 - drop/b_tok) p), p_last)`` and the search stops.
* Channels (budget ``b``, drop against ``acc0``, so token and channel drops of the block
  together): LFS scores of block l's qkv and fc1 (:mod:`vitbench.methods.lfs`, CLS feature after
  block l distilled from a frozen copy of M on the original images, ``num_samples`` random
  calibration images; the ``lowpass`` filter, by default the one the official code ran; the
  student in train mode with stochastic depth ``drop_path``, official ``--drop-path 0.1``, drawn
  from a generator seeded by ``(seed, l)``); ``P_up = #qkv + #fc1 outputs - 4``; ``p`` starts at
  ``round(0.01 P_up)``; removing ``p`` channels = the threshold at index
  ``round(p * n_scored / n_channels)`` of block l's sorted scores (the official global-threshold
  arithmetic), structured per head as in LFS; while the
  drop is within budget ``p <- min(ceil((2 - drop/b) p), ceil(p + (P_up - p)/4), P_up)``; on the
  first excess ``p <- max(int((2 - drop/b) p), p_last)``, prune with it, stop.
* M <- the pruned block-l model; next block.

LFE keeps the selected tokens in ``token_order`` (:func:`vitbench.methods.lfeblock.kept_indices`;
default ``official``, the order the official selector's CUDA runs produced), which every later
block's LFE scores depend on.

Deviations (the method card lists them with the figures measured against the official code):
(A) the official code accepts the interpolated count after the first excess without evaluating
it; here it is evaluated and, when it also exceeds the budget, the last verified count is kept,
so every block's drop on the calibration subset stays within its budget. (B) The drop is exact
(the official one is a float32 mean of per-batch percentages). (C) A block whose MLP is down to
one unit is scored and pruned like any other (the official scoring crashes there). (D) Block 0's
token floor is scaled to the model's token count.

Output: the slimmed model, its :class:`~vitbench.methods.slimming.slim.SlimPlan` (indices into the input
model) and the per-block token schedule ``token_cfg``; :func:`save_result` / :func:`load_result`
write and read them as a safetensors artifact.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from vitbench.core.errors import VitbenchError
from vitbench.core.models import input_size
from vitbench.measure import count_gmacs
from vitbench.measure.accuracy import top1_pct
from vitbench.methods.base import ChannelMethod, Conformance, register
from vitbench.methods.lfeblock import apply_lfe, check_token_order
from vitbench.methods.patching.patch import Handle, input_tokens, prefix_tokens
from vitbench.methods.requirements import Requirements
from vitbench.methods.slimming.lowpass import check_cutoff, check_filter
from vitbench.methods.slimming.slim import TOKEN_CFG_ATTR, SlimPlan, model_dims, slim_model
from vitbench.methods.slimming.taylor import Criterion, lfs_scores, plan_from_scores
from vitbench.store import artifacts

#: Image tokens that must survive block 0: the official lower bound 190 of DeiT's 196.
FIRST_BLOCK_MIN_FRAC = 190 / 196


@dataclasses.dataclass(frozen=True)
class VTCLFCParams:
    """Cascade native parameters (official defaults of the DeiT-T/S scripts).

    Attributes:
        allowable_drop: total top-1 drop budget in points on the calibration subset (9.5),
            split evenly over the blocks.
        drop_for_token: share of each block's budget the token search may use (0.56).
        cutoff: LFS image low-pass cutoff factor (0.1).
        cutoff_token: LFE ``--cutoff-token`` (0.85; token-filter sigma = n * 0.15 / 2).
        token_order: order of LFE's kept tokens (:func:`vitbench.methods.lfeblock.kept_indices`):
            ``official`` (the official selector's CUDA output order) or ``spatial`` (index order).
        lfs_lambda: LFS CE weight (0.1); distillation gets 1 - lambda.
        lowpass: LFS image low-pass filter: ``official`` (what the paper's code ran) or
            ``symmetric`` (real part of the full inverse transform).
        drop_path: stochastic depth of the LFS student while scoring (``--drop-path``, 0.1;
            0 = none); draws seeded by ``(seed, block)``.
        num_samples: calibration images drawn (with replacement) for each block's LFS (2000).
        eval_samples: calibration images of the fixed accuracy subset (5000).
        max_gmacs_frac: fail with a one-line error when the result keeps more than this fraction
            of the dense GMACs (0 = no target).
        seed: draws of the subsets and of the stochastic depth.
        prune_blocks: blocks to prune, in order (``--prune-block-id``; empty = all); the budget
            is split over these.
        finetune_epochs: fine-tune after pruning, with the token schedule active and
            distillation from the dense model (harness; 0 = none).
    """

    allowable_drop: float = 9.5
    drop_for_token: float = 0.56
    cutoff: float = 0.1
    cutoff_token: float = 0.85
    lfs_lambda: float = 0.1
    lowpass: str = "official"
    drop_path: float = 0.1
    num_samples: int = 2000
    eval_samples: int = 5000
    max_gmacs_frac: float = 0.0
    seed: int = 0
    prune_blocks: tuple[int, ...] = ()
    finetune_epochs: float = 0.0
    token_order: str = "official"

    def __post_init__(self) -> None:
        if self.allowable_drop < 0:
            raise ValueError(f"allowable_drop {self.allowable_drop} is negative; use e.g. 9.5 (points)")
        if not 0.0 <= self.drop_for_token <= 1.0:
            raise ValueError(f"drop_for_token {self.drop_for_token} is outside [0, 1]")
        if not 0.0 <= self.cutoff_token < 1.0:
            raise ValueError(f"cutoff_token {self.cutoff_token} gives sigma <= 0; use a value in [0, 1)")
        if self.num_samples < 1 or self.eval_samples < 1:
            raise ValueError("num_samples and eval_samples must be at least 1")
        if not 0.0 <= self.max_gmacs_frac <= 1.0:
            raise ValueError(f"max_gmacs_frac {self.max_gmacs_frac} is outside [0, 1] (0 = no target)")
        check_cutoff(self.cutoff)
        check_filter(self.lowpass)
        check_token_order(self.token_order)
        self.criterion()

    def criterion(self, block: int = 0) -> Criterion:
        """LFS settings of block ``block``'s channel search (``num_samples``: applied by the subset draw)."""
        seed = int(np.random.SeedSequence([self.seed, 0xD9, block]).generate_state(1)[0])
        return Criterion(True, self.cutoff, self.lfs_lambda, 1.0, 0, self.lowpass, self.drop_path, seed)


@dataclasses.dataclass
class CascadeResult:
    """What the cascade produced.

    Attributes:
        model: the slimmed model (no token patch; see :func:`with_tokens`).
        plan: slim plan, indices into the input model.
        token_cfg: image tokens kept after each block's LFE selection.
        history: one dict per block (accuracies, token and channel counts, evaluations).
    """

    model: nn.Module
    plan: SlimPlan
    token_cfg: tuple[int, ...]
    history: list[dict[str, Any]]


def _materialize(
    calib: Iterable[tuple[torch.Tensor, torch.Tensor]] | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    if calib is None:
        raise VitbenchError("vtc-lfc needs calibration data; the calibration loader is missing")
    xs, ys = [], []
    for x, y in calib:
        xs.append(x.detach().cpu())
        ys.append(y.detach().cpu())
    if not xs or sum(len(y) for y in ys) == 0:
        raise VitbenchError("the calibration loader is empty; give vtc-lfc at least one batch")
    return torch.cat(xs), torch.cat(ys)


def with_tokens(
    model: nn.Module, token_cfg: tuple[int, ...], cutoff_token: float = 0.85, token_order: str = "official"
) -> Handle:
    """Patch ``model`` (dense or slimmed) with LFE selection to ``token_cfg``; returns the undo handle.

    ``token_order``: order of the kept tokens (:func:`vitbench.methods.lfeblock.kept_indices`).
    """
    n = input_tokens(model) - prefix_tokens(model)
    targets = tuple(t if t < n else -1 for t in token_cfg)
    params = {"token_cfg": list(token_cfg), "cutoff_token": cutoff_token, "token_order": token_order}
    return apply_lfe(model, targets, 1.0 - cutoff_token, "vtc-lfc", params, "scored", 0, token_order)


def _score_count(model: nn.Module) -> tuple[int, int]:
    """(scored channels, all Linear/Conv output channels): the official global-threshold sizes."""
    d = model_dims(model)
    scored = d.embed + sum(h * (2 * dqk + dv) + d.embed + m + d.embed for h, dqk, dv, m in d.blocks)
    heads = sum(
        int(getattr(model, n).out_features)
        for n in ("head", "head_dist")
        if isinstance(getattr(model, n, None), nn.Linear)
    )
    return scored, scored + heads


def _batches(x: torch.Tensor, y: torch.Tensor, batch: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(x[i : i + batch], y[i : i + batch]) for i in range(0, len(y), batch)]


def cascade(
    model: nn.Module,
    calib: Iterable[tuple[torch.Tensor, torch.Tensor]] | None,
    params: VTCLFCParams,
    log: Callable[[str], None] = lambda _m: None,
    blocks: list[int] | None = None,
) -> CascadeResult:
    """Run the bottom-up cascade on ``model`` (not modified) with calibration batches ``calib``.

    Args:
        model: a timm ViT (or a slimmed one).
        calib: yields ``(images [B, 3, H, W] normalised, labels [B])``; materialised once.
        params: budgets and criterion settings.
        log: one line per block.
        blocks: blocks to prune, in order (default ``params.prune_blocks``, else all).
    """
    x_all, y_all = _materialize(calib)
    device = next(model.parameters()).device
    rng = np.random.default_rng(params.seed)
    n_eval = min(params.eval_samples, len(y_all))
    eval_idx = torch.from_numpy(rng.choice(len(y_all), n_eval, replace=False))
    x_eval, y_eval = x_all[eval_idx].to(device), y_all[eval_idx]
    depth = len(model_dims(model).blocks)
    if blocks is None:
        blocks = list(params.prune_blocks) or list(range(depth))
    bad = [b for b in blocks if not 0 <= b < depth]
    if bad or len(set(blocks)) != len(blocks):
        raise VitbenchError(f"prune_blocks {blocks} must be distinct blocks in 0..{depth - 1}")
    n0 = input_tokens(model) - prefix_tokens(model)
    token_cfg = [n0] * depth
    plan = SlimPlan.identity(model)
    current = slim_model(model, plan)
    budget = params.allowable_drop / len(blocks)
    history = []

    def accuracy(m: nn.Module, cfg: list[int]) -> float:
        with with_tokens(m, tuple(cfg), params.cutoff_token, params.token_order):
            return top1_pct(m, x_eval, y_eval)

    for l in blocks:  # noqa: E741
        acc0 = accuracy(current, token_cfg)
        evals = 0
        # -- tokens ------------------------------------------------------------------------
        b_tok = budget * params.drop_for_token
        n_l = token_cfg[l]
        lower = math.floor(n0 * FIRST_BLOCK_MIN_FRAC) if l == 0 else 0
        cfg = list(token_cfg)
        p, p_last = 1, 0
        while b_tok > 0 and cfg[l] > lower:
            cfg = token_cfg[:l] + [max(n_l - p, lower)] * (depth - l)
            drop = acc0 - accuracy(current, cfg)
            evals += 1
            if drop <= b_tok and cfg[l] > lower:
                p_last = p
                p = min(math.ceil((2 - drop / b_tok) * p), math.ceil(p + cfg[l] / 3))
            else:
                p = max(int((2 - drop / b_tok) * p), p_last)
                cfg = token_cfg[:l] + [max(n_l - p, lower)] * (depth - l)
                break
        tok_drop = acc0 - accuracy(current, cfg) if cfg != token_cfg else 0.0
        if tok_drop > b_tok and cfg != token_cfg:  # the interpolated count overshoots: last verified one
            cfg = token_cfg[:l] + [max(n_l - p_last, lower)] * (depth - l) if p_last else list(token_cfg)
            tok_drop = acc0 - accuracy(current, cfg) if cfg != token_cfg else 0.0
        evals += 1
        # -- channels ------------------------------------------------------------------------
        h, dqk, dv, m = model_dims(current).blocks[l]
        p_up = h * (2 * dqk + dv) + m - 4
        n_scored, n_channels = _score_count(current)
        idx = torch.from_numpy(rng.choice(len(y_all), params.num_samples, replace=True))
        scores: dict[int, Any] = {}
        ordered = torch.zeros(0)
        if budget > 0:
            sample = _batches(x_all[idx], y_all[idx], 100)
            with with_tokens(current, tuple(token_cfg), params.cutoff_token, params.token_order):
                scores = lfs_scores(current, sample, params.criterion(l), [l], feature_block=l)
            ordered = torch.sort(torch.cat(scores[l])).values

        def pruned_with(p: int, cur: nn.Module = current, sc: Any = scores, srt: Any = ordered) -> Any:
            """``cur`` with ``p`` channels of block l removed: (model, plan relative to ``cur``)."""
            k = round(p * n_scored / n_channels)  # noqa: B023  (the official rate arithmetic)
            thr = float("-inf") if k <= 0 else float(srt[min(k, len(srt) - 1)])
            inner = plan_from_scores(cur, sc, thr)
            return slim_model(cur, inner), inner

        best_model, best_inner = current, SlimPlan.identity(current)
        drop = 0.0
        p, p_last = max(1, round(0.01 * p_up)), 0
        while budget > 0 and drop < budget and p < p_up:
            cand, inner = pruned_with(p)
            drop = acc0 - accuracy(cand, cfg)
            evals += 1
            if drop <= budget:
                best_model, best_inner = cand, inner
                p_last = p
                p = min(math.ceil((2 - drop / budget) * p), math.ceil(p + (p_up - p) / 4), p_up)
            else:
                p_try = max(int((2 - drop / budget) * p), p_last)
                if p_try > p_last:
                    cand, inner = pruned_with(p_try)
                    evals += 1
                    if acc0 - accuracy(cand, cfg) <= budget:  # else keep the last verified p_last
                        best_model, best_inner = cand, inner
                break
        acc_after = accuracy(best_model, cfg)
        current, plan, token_cfg = best_model, plan.compose(best_inner), cfg
        dims = model_dims(current).blocks[l]
        rec = {
            "block": l,
            "acc0": acc0,
            "acc_after_tokens": acc0 - tok_drop,
            "acc_after": acc_after,
            "tokens": token_cfg[l],
            "heads": dims[0],
            "d_qk": dims[1],
            "d_v": dims[2],
            "mlp": dims[3],
            "evaluations": evals,
        }
        history.append(rec)
        log(
            f"vtc-lfc block {l}: top-1 {acc0:.2f} -> {acc_after:.2f}, tokens {n_l}->{token_cfg[l]}, "
            f"heads {h}->{dims[0]}, d_qk {dqk}->{dims[1]}, d_v {dv}->{dims[2]}, mlp {m}->{dims[3]}"
        )
    return CascadeResult(current, plan, tuple(token_cfg), history)


# ---------------------------------------------------------------------------------------------
# artifacts


def save_result(
    path: Path, result: CascadeResult, model_name: str, meta: dict[str, Any] | None = None
) -> Path:
    """Write the pruned weights, plan and token schedule as a safetensors artifact."""
    info = {
        "kind": "vtc-lfc",
        "model": model_name,
        "plan": result.plan.to_dict(),
        "token_cfg": list(result.token_cfg),
        "history": result.history,
        **(meta or {}),
    }
    return artifacts.save(path, dict(result.model.state_dict()), info, torch.float32)


def load_result(
    model: nn.Module, path: Path, model_name: str
) -> tuple[nn.Module, tuple[int, ...], dict[str, Any]]:
    """Rebuild the pruned model from ``model`` (the dense model it was pruned from) and an artifact.

    Returns:
        (slimmed model with the artifact's weights, token_cfg, metadata).
    """
    tensors, meta = artifacts.load(path)
    if meta.get("kind") != "vtc-lfc":
        raise VitbenchError(f"{path} is not a vtc-lfc artifact (kind {meta.get('kind')!r})")
    if meta.get("model") != model_name:
        raise VitbenchError(
            f"{path.name} was pruned from '{meta.get('model')}', not '{model_name}'; prune this model instead"
        )
    plan = SlimPlan.from_dict(meta["plan"])
    try:
        plan.validate(model)
    except VitbenchError as exc:
        raise VitbenchError(f"{path.name} does not fit this model ({exc})") from None
    pruned = slim_model(model, plan)
    own = pruned.state_dict()
    bad = [k for k in own if k not in tensors or tensors[k].shape != own[k].shape]
    if bad:
        raise VitbenchError(
            f"{path.name} does not fit this model (tensor {bad[0]}); prune this model instead"
        )
    pruned.load_state_dict({k: tensors[k].to(own[k].dtype) for k in own})
    setattr(pruned, TOKEN_CFG_ATTR, tuple(int(t) for t in meta["token_cfg"]))
    return pruned, tuple(int(t) for t in meta["token_cfg"]), meta


@register
class VTCLFC(ChannelMethod):
    """VTC-LFC: bottom-up cascade of LFE token and LFS channel pruning under an accuracy budget."""

    name = "vtc-lfc"
    Params = VTCLFCParams
    knob: ClassVar[str] = "allowable_drop"
    needs_calibration: ClassVar[bool] = True
    summary = "bottom-up cascade: LFE tokens then LFS channels per block, accuracy budget (Wang et al. 2022)"
    #: 2: LFE keeps its tokens in the official selector's order by default (token_order), which
    #: changes the token and channel searches from the second block on
    version: ClassVar[int] = 2
    #: the kit: block 0 only, few samples, a budget that prunes a random model; still minutes
    conformance = Conformance(
        fast={"num_samples": 8, "eval_samples": 16, "prune_blocks": (0,), "allowable_drop": 50.0},
        models=("vit",),
        slow=True,
    )

    @classmethod
    def map_keep_ratio(cls, keep_ratio: float, model: nn.Module) -> dict[str, Any]:
        """Keep ratio 1 = no pruning (budget 0); otherwise the budget ``allowable_drop`` decides."""
        return {"allowable_drop": 0.0} if keep_ratio >= 1.0 else {}

    requirements = Requirements(
        vit_blocks=True,
        slimmable=True,
        class_token=True,
        uses="LFS distils the class token's feature and LFE ranks tokens by its attention",
    )

    @classmethod
    def prune(cls, model: nn.Module, params: Any, calib: Any) -> nn.Module:
        """The slimmed model; its searched token schedule is the attribute ``vb_token_cfg``.

        The model is returned unpatched; :meth:`token_handle` applies the LFE schedule (the
        harness evaluates, measures and fine-tunes under it).
        """
        result = cascade(model, calib, params)
        check_target(model, result, params)
        out = result.model
        setattr(out, TOKEN_CFG_ATTR, tuple(result.token_cfg))
        out.vb_history = result.history  # type: ignore[assignment]
        return out

    @classmethod
    def token_handle(cls, model: nn.Module, params: Any, seed: int = 0) -> Handle | None:
        """The LFE patch of ``model``'s ``vb_token_cfg`` (``None`` for a model without one)."""
        cfg = getattr(model, TOKEN_CFG_ATTR, None)
        if cfg is None:
            return None
        return with_tokens(model, tuple(int(t) for t in cfg), params.cutoff_token, params.token_order)


def check_target(model: nn.Module, result: CascadeResult, params: VTCLFCParams) -> float:
    """GMACs fraction of the result (batch 1); one-line error when above ``max_gmacs_frac``."""
    size = input_size(model)
    dense = count_gmacs(model, size)
    with with_tokens(result.model, result.token_cfg, params.cutoff_token, params.token_order):
        pruned = count_gmacs(result.model, size)
    frac = pruned / dense
    if params.max_gmacs_frac and frac > params.max_gmacs_frac:
        raise VitbenchError(
            f"vtc-lfc reached {100 * frac:.1f}% of dense GMACs ({pruned:.4f}/{dense:.4f}), above the target "
            f"{100 * params.max_gmacs_frac:.0f}% with allowable_drop {params.allowable_drop}; "
            "raise allowable_drop"
        )
    return frac


__all__ = [
    "FIRST_BLOCK_MIN_FRAC",
    "VTCLFC",
    "CascadeResult",
    "TOKEN_CFG_ATTR",
    "VTCLFCParams",
    "cascade",
    "check_target",
    "load_result",
    "save_result",
    "with_tokens",
]
