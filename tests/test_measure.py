"""Accuracy metrics, parameter count and throughput hygiene."""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np
import pytest
import torch
from torch import nn

from vitbench.core.errors import VitbenchError
from vitbench.core.threads import intra_op_threads
from vitbench.measure import (
    ThroughputResult,
    classification_metrics,
    count_params_m,
    measure_throughput,
)

# Four samples, K = 6; logits are log-probabilities, so softmax returns these rows exactly.
PROBS = [
    [0.45, 0.25, 0.10, 0.10, 0.05, 0.05],  # y=0: top-1 hit, conf 0.45
    [0.30, 0.25, 0.20, 0.10, 0.10, 0.05],  # y=5: ranked 6th -> top-1 and top-5 miss, conf 0.30
    [0.10, 0.70, 0.05, 0.05, 0.05, 0.05],  # y=0: ranked 2nd -> top-5 hit only, conf 0.70
    [0.05, 0.05, 0.05, 0.05, 0.05, 0.75],  # y=5: top-1 hit, conf 0.75
]
LABELS = [0, 5, 0, 5]


def _toy() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor(PROBS, dtype=torch.float64).log(), torch.tensor(LABELS)


def test_hand_computed_metrics() -> None:
    logits, labels = _toy()
    m = classification_metrics(logits, labels, n_bootstrap=200, ece_bins=2)
    assert set(m) == {"top1", "top5", "nll", "ece", "top1_ci_low", "top1_ci_high"}
    assert m["top1"] == pytest.approx(50.0, abs=1e-9)
    assert m["top5"] == pytest.approx(75.0, abs=1e-9)
    nll = -(math.log(0.45) + math.log(0.05) + math.log(0.10) + math.log(0.75)) / 4
    assert m["nll"] == pytest.approx(nll, abs=1e-9)
    # bins (0, .5]: {0.45 hit, 0.30 miss} acc .5 conf .375; (.5, 1]: {0.70 miss, 0.75 hit} acc .5 conf .725
    ece = (abs(0.5 - 0.375) * 2 / 4 + abs(0.5 - 0.725) * 2 / 4) * 100
    assert m["ece"] == pytest.approx(ece, abs=1e-9)
    assert 0.0 <= m["top1_ci_low"] <= m["top1"] <= m["top1_ci_high"] <= 100.0


def test_float32_logits_and_default_bins_match_bruteforce() -> None:
    rng = np.random.default_rng(3)
    logits = torch.from_numpy(rng.normal(size=(300, 10)) * 3).float()
    labels = torch.from_numpy(rng.integers(0, 10, size=300))
    m = classification_metrics(logits, labels, n_bootstrap=50)
    p = torch.softmax(logits.double(), dim=1)
    conf, pred = p.max(dim=1)
    hit = (pred == labels).double()
    ece = 0.0
    for b in range(15):
        in_bin = (conf > b / 15) & (conf <= (b + 1) / 15)
        if in_bin.any():
            ece += abs(hit[in_bin].mean() - conf[in_bin].mean()).item() * in_bin.sum().item() / 300
    assert m["ece"] == pytest.approx(ece * 100, abs=1e-9)
    assert m["top1"] == pytest.approx(hit.mean().item() * 100, abs=1e-9)
    assert m["nll"] == pytest.approx(nn.functional.cross_entropy(logits.double(), labels).item(), abs=1e-9)


def test_top5_with_fewer_than_five_classes() -> None:
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 1.0, 2.0]])
    m = classification_metrics(logits, torch.tensor([2, 2]), n_bootstrap=10)
    assert m["top1"] == pytest.approx(50.0)
    assert m["top5"] == pytest.approx(100.0)


def _correct_logits(correct: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits over 2 classes whose top-1 is right exactly where ``correct`` is True."""
    labels = torch.zeros(len(correct), dtype=torch.int64)
    logits = torch.zeros(len(correct), 2)
    logits[:, 0] = torch.from_numpy(np.where(correct, 1.0, -1.0)).float()
    return logits, labels


def test_bootstrap_ci_deterministic_and_narrows_with_n() -> None:
    rng = np.random.default_rng(0)
    small = _correct_logits(rng.random(100) < 0.7)
    large = _correct_logits(rng.random(10_000) < 0.7)
    a = classification_metrics(*small, n_bootstrap=500, seed=7)
    b = classification_metrics(*small, n_bootstrap=500, seed=7)
    assert a == b
    c = classification_metrics(*small, n_bootstrap=500, seed=8)
    assert (c["top1_ci_low"], c["top1_ci_high"]) != (a["top1_ci_low"], a["top1_ci_high"])
    big = classification_metrics(*large, n_bootstrap=500, seed=7)
    for m in (a, big):
        assert m["top1_ci_low"] < m["top1"] < m["top1_ci_high"]
    assert big["top1_ci_high"] - big["top1_ci_low"] < (a["top1_ci_high"] - a["top1_ci_low"]) / 3


def test_metric_input_errors() -> None:
    with pytest.raises(VitbenchError):
        classification_metrics(torch.zeros(0, 5), torch.zeros(0, dtype=torch.int64))
    with pytest.raises(VitbenchError):
        classification_metrics(torch.zeros(2, 5), torch.zeros(3, dtype=torch.int64))
    with pytest.raises(VitbenchError):
        classification_metrics(torch.zeros(2, 5), torch.tensor([0, 5]))
    with pytest.raises(VitbenchError):
        classification_metrics(torch.zeros(2, 5), torch.tensor([0, 1]), n_bootstrap=0)


def test_count_params_m() -> None:
    assert count_params_m(nn.Linear(10, 5)) == pytest.approx(55 / 1e6)


def _tiny_net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 4, stride=4), nn.Flatten(), nn.Linear(4 * 4 * 4, 3))


def test_throughput_fields_and_model_untouched() -> None:
    model = _tiny_net().train()
    before = [p.detach().clone() for p in model.parameters()]
    r = measure_throughput(model, input_size=(3, 16, 16), batch_size=2, warmup=1, repeats=3)
    assert isinstance(r, ThroughputResult)
    assert r.img_per_s > 0 and r.ms_per_batch > 0
    assert r.img_per_s == pytest.approx(2 / (r.ms_per_batch / 1000))
    assert (r.batch_size, r.dtype, r.channels_last, r.compiled) == (2, "float32", False, False)
    assert r.threads == torch.get_num_threads() and r.device.startswith("cpu (")
    assert model.training and all(m.training for m in model.modules())
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.batch_size = 3  # type: ignore[misc]

    r16 = measure_throughput(
        model,
        input_size=(3, 16, 16),
        batch_size=2,
        dtype=torch.bfloat16,
        warmup=0,
        repeats=1,
        channels_last=True,
    )
    assert (r16.dtype, r16.channels_last) == ("bfloat16", True)
    assert model.training
    for p, q in zip(model.parameters(), before):
        assert p.dtype == torch.float32 and p.is_contiguous() and torch.equal(p, q)


def test_throughput_rejects_fp16_on_cpu_and_bad_args() -> None:
    with pytest.raises(VitbenchError, match="bfloat16"):
        measure_throughput(_tiny_net(), input_size=(3, 16, 16), batch_size=1, dtype=torch.float16)
    with pytest.raises(VitbenchError):
        measure_throughput(_tiny_net(), input_size=(3, 16, 16), batch_size=0)


def test_time_passes_interleaves_rounds_after_warmup() -> None:
    from vitbench.measure.throughput import time_passes

    calls: list[str] = []
    times = time_passes([lambda: calls.append("a"), lambda: calls.append("b")], repeats=3, warmup=2)
    assert calls == ["a", "b"] * 5  # 2 untimed rounds, then 3 timed interleaved rounds
    assert [len(t) for t in times] == [3, 3]
    assert all(s >= 0.0 for t in times for s in t)
    # min_time_s keeps timing rounds until each pass has spent that long
    slow = time_passes([lambda: time.sleep(0.002)], repeats=1, warmup=0, min_time_s=0.01)[0]
    assert len(slow) >= 2 and sum(slow) >= 0.01
    for bad in ({"repeats": 0}, {"repeats": 1, "warmup": -1}, {"repeats": 1, "min_time_s": -1.0}):
        with pytest.raises(VitbenchError, match="repeats >= 1"):
            time_passes([lambda: None], **bad)  # type: ignore[arg-type]
    with pytest.raises(VitbenchError, match="at least one pass"):
        time_passes([], repeats=1)


@pytest.mark.parametrize(("threads", "device"), [(1, "cpu (1 thread)"), (2, "cpu (2 threads)")])
def test_throughput_device_names_the_thread_count(threads: int, device: str) -> None:
    with intra_op_threads(threads):
        r = measure_throughput(_tiny_net(), input_size=(3, 16, 16), batch_size=2, warmup=0, repeats=1)
    assert (r.threads, r.device) == (threads, device)
