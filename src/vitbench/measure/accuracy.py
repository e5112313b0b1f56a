"""Classification metrics: top-1/top-5, NLL, ECE and a bootstrap CI of top-1."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from vitbench.core.errors import VitbenchError

#: Upper bound on resampled indices held in memory at once (int64 elements, ~32 MiB).
_BOOTSTRAP_CHUNK_ELEMS = 1 << 22


def _check_inputs(logits: torch.Tensor, labels: torch.Tensor) -> None:
    """Raise :class:`VitbenchError` unless ``logits`` [N, K] and ``labels`` [N] are usable."""
    if logits.ndim != 2 or labels.ndim != 1:
        raise VitbenchError(
            f"expected logits [N, K] and labels [N], got {tuple(logits.shape)} and {tuple(labels.shape)}"
        )
    if logits.shape[0] != labels.shape[0]:
        raise VitbenchError(
            f"logits have {logits.shape[0]} rows but labels {labels.shape[0]}; pass matching N"
        )
    if logits.shape[0] == 0 or logits.shape[1] == 0:
        raise VitbenchError("cannot compute metrics on an empty batch; evaluate at least one sample")
    if not logits.is_floating_point():
        raise VitbenchError(f"logits must be floating point, got {logits.dtype}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise VitbenchError(f"labels must be integer class indices, got {labels.dtype}")
    if int(labels.min()) < 0 or int(labels.max()) >= logits.shape[1]:
        raise VitbenchError(
            f"labels must lie in [0, {logits.shape[1] - 1}] for {logits.shape[1]} classes; fix the labels"
        )
    if not bool(torch.isfinite(logits).all()):
        raise VitbenchError("logits contain NaN or inf; check the model output (e.g. fp16 overflow)")


def bootstrap_ci_pct(
    correct: np.ndarray, n_bootstrap: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of a 0/1 vector, in percent.

    Resamples the vector with replacement ``n_bootstrap`` times using
    ``numpy.random.default_rng(seed)``; indices are drawn in fixed-size chunks of resamples,
    so the result depends only on (``correct``, ``n_bootstrap``, ``seed``).

    Args:
        correct: [N] per-sample correctness (bool or 0/1).
        n_bootstrap: number of resamples (>= 1).
        seed: seed of the numpy Generator.
        level: two-sided coverage, 0.95 -> 2.5 and 97.5 percentiles.

    Returns:
        ``(low, high)`` in percent (0-100).

    Raises:
        VitbenchError: empty vector or ``n_bootstrap < 1``.
    """
    values = np.asarray(correct, dtype=np.float64).reshape(-1)
    n = values.shape[0]
    if n == 0:
        raise VitbenchError("cannot bootstrap an empty correctness vector; evaluate at least one sample")
    if n_bootstrap < 1:
        raise VitbenchError(f"n_bootstrap must be >= 1, got {n_bootstrap}")
    rng = np.random.default_rng(seed)
    rows = max(1, _BOOTSTRAP_CHUNK_ELEMS // n)
    means = np.empty(n_bootstrap, dtype=np.float64)
    for start in range(0, n_bootstrap, rows):
        stop = min(n_bootstrap, start + rows)
        idx = rng.integers(0, n, size=(stop - start, n))  # [rows, N]
        means[start:stop] = values[idx].mean(axis=1)
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(means, [tail, 100.0 - tail])
    return float(low) * 100.0, float(high) * 100.0


def expected_calibration_error_pct(confidence: np.ndarray, correct: np.ndarray, n_bins: int = 15) -> float:
    """ECE with equal-width confidence bins, in percent.

    Bin ``b`` holds confidences in ``(b/B, (b+1)/B]`` (the first bin also holds 0);
    ``ECE = sum_b |acc_b - conf_b| * n_b / N``.

    Args:
        confidence: [N] max softmax probability, in [0, 1].
        correct: [N] top-1 correctness (bool or 0/1).
        n_bins: number of bins B (>= 1).

    Returns:
        ECE in percent (0-100).

    Raises:
        VitbenchError: ``n_bins < 1`` or empty input.
    """
    conf = np.asarray(confidence, dtype=np.float64).reshape(-1)
    corr = np.asarray(correct, dtype=np.float64).reshape(-1)
    if n_bins < 1:
        raise VitbenchError(f"ece_bins must be >= 1, got {n_bins}")
    if conf.shape[0] == 0:
        raise VitbenchError("cannot compute ECE on an empty batch; evaluate at least one sample")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.searchsorted(edges[1:-1], conf, side="left")  # (lo, hi] bins, [N] in [0, B-1]
    sum_conf = np.bincount(bins, weights=conf, minlength=n_bins)
    sum_acc = np.bincount(bins, weights=corr, minlength=n_bins)
    # sum_b |acc_b - conf_b| * n_b / N == sum_b |sum_acc_b - sum_conf_b| / N
    return float(np.abs(sum_acc - sum_conf).sum() / conf.shape[0] * 100.0)


def classification_metrics(
    logits: torch.Tensor,
    labels: torch.Tensor,
    n_bootstrap: int = 1000,
    seed: int = 0,
    ece_bins: int = 15,
) -> dict[str, float]:
    """Top-1/top-5 accuracy, NLL, ECE and a 95 % bootstrap CI of top-1.

    All computation is in float64 on CPU. Ties in the logits are resolved by ``torch.topk``.

    Args:
        logits: [N, K] float class scores (any float dtype, any device).
        labels: [N] int64 class indices in [0, K).
        n_bootstrap: resamples for the percentile bootstrap CI of top-1 (>= 1).
        seed: seed of the ``numpy.random.default_rng`` used by the bootstrap.
        ece_bins: equal-width confidence bins for ECE.

    Returns:
        ``top1``, ``top5`` (top-min(5, K)), ``ece``, ``top1_ci_low``, ``top1_ci_high`` in percent
        (0-100) and ``nll``, the mean cross-entropy in nats.

    Raises:
        VitbenchError: empty input, mismatched shapes, labels out of range or non-finite logits.
    """
    _check_inputs(logits, labels)
    logp = torch.log_softmax(logits.detach().to(device="cpu", dtype=torch.float64), dim=1)  # [N, K]
    y = labels.detach().to(device="cpu", dtype=torch.int64)  # [N]
    k = min(5, logp.shape[1])
    topk = logp.topk(k, dim=1).indices  # [N, k]
    hit = topk == y[:, None]  # [N, k]
    correct1 = hit[:, 0].numpy()  # [N] bool
    correct5 = hit.any(dim=1).numpy()  # [N] bool
    nll = float(-logp.gather(1, y[:, None]).mean())
    confidence = logp.max(dim=1).values.exp().numpy()  # [N] max softmax prob
    ci_low, ci_high = bootstrap_ci_pct(correct1, n_bootstrap=n_bootstrap, seed=seed)
    return {
        "top1": float(correct1.mean()) * 100.0,
        "top5": float(correct5.mean()) * 100.0,
        "nll": nll,
        "ece": expected_calibration_error_pct(confidence, correct1, n_bins=ece_bins),
        "top1_ci_low": ci_low,
        "top1_ci_high": ci_high,
    }


@torch.inference_mode()
def top1_pct(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 256) -> float:
    """Top-1 accuracy in percent of ``model`` in eval mode (its train/eval flag is restored).

    Args:
        model: classifier returning logits ``[B, C]``.
        x: normalised images ``[N, 3, H, W]`` (moved batch by batch to the model's device).
        y: int64 labels ``[N]``.
        batch_size: evaluation batch size.

    Returns:
        ``100 * correct / N`` (0.0 for ``N == 0``).
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    correct = 0
    for i in range(0, len(y), batch_size):
        logits = model(x[i : i + batch_size].to(device))
        correct += int((logits.argmax(-1).cpu() == y[i : i + batch_size]).sum())
    model.train(was_training)
    return 100.0 * correct / max(len(y), 1)
