"""The GMACs counter on every attention kernel, its reporting rules and its self-check."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from torch import nn

from vitbench.measure import (
    COUNTER_VERSION,
    GmacsCounterError,
    count_macs,
    count_macs_report,
    macs_by_kind,
    op_kind,
    self_check,
)
from vitbench.measure import gmacs as G

B, H, LQ, LK, E, EV = 2, 3, 5, 7, 8, 4


def _expected_attention() -> int:
    return B * H * LQ * LK * (E + EV)  # q k^T (E) and attn v (Ev)


# Every SDPA op and backend kernel torch has shipped, CUDA ones included: the formula reads the
# shapes only, so it is checked here on fake shapes for ops that cannot run on this machine.
ALL_ATTENTION_OPS = [
    "scaled_dot_product_attention",
    "_scaled_dot_product_attention_math",
    "_scaled_dot_product_attention_math_for_mps",
    "_scaled_dot_product_flash_attention",  # CUDA flash
    "_scaled_dot_product_flash_attention_for_cpu",
    "_scaled_dot_product_efficient_attention",  # CUDA memory-efficient
    "_scaled_dot_product_cudnn_attention",  # cuDNN
    "_scaled_dot_product_fused_attention_overrideable",  # out-of-tree backends
]
ALL_BLHE_KERNELS = ["_flash_attention_forward", "_efficient_attention_forward"]


@pytest.mark.parametrize("name", ALL_ATTENTION_OPS)
def test_formula_of_every_sdpa_op(name: str) -> None:
    q, k, v = torch.empty(B, H, LQ, E), torch.empty(B, H, LK, E), torch.empty(B, H, LK, EV)
    assert G.FORMULAS[name]((q, k, v), {}, None) == _expected_attention()
    assert op_kind(f"aten.{name}") == "attention"


@pytest.mark.parametrize("name", ALL_BLHE_KERNELS)
def test_formula_of_flash_and_efficient_kernels(name: str) -> None:
    q, k, v = torch.empty(B, LQ, H, E), torch.empty(B, LK, H, E), torch.empty(B, LK, H, EV)
    assert G.FORMULAS[name]((q, k, v), {}, None) == _expected_attention()


def test_every_attention_op_of_this_torch_has_a_formula() -> None:
    """A torch release that adds an SDPA variant must get a formula (or this test fails)."""
    aten_names = [n for n in dir(torch.ops.aten) if "attention" in n and "backward" not in n]
    sdpa = [n for n in aten_names if "scaled_dot_product" in n or n in ALL_BLHE_KERNELS]
    assert "scaled_dot_product_attention" in sdpa
    missing = [n for n in sdpa if n not in G.FORMULAS]
    assert not missing, f"attention ops without a MAC formula on torch {torch.__version__}: {missing}"


class _Attention(nn.Module):
    def __init__(self, op: Any) -> None:
        super().__init__()
        self.op = op

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> Any:
        return self.op(q, k, v)


@pytest.mark.parametrize(
    "op",
    [
        torch.nn.functional.scaled_dot_product_attention,
        torch.ops.aten.scaled_dot_product_attention,
        torch.ops.aten._scaled_dot_product_attention_math,
        torch.ops.aten._scaled_dot_product_flash_attention_for_cpu,
        lambda q, k, v: (q @ k.transpose(-2, -1)).softmax(-1) @ v,  # explicit path
    ],
    ids=["functional", "composite", "math", "cpu-flash", "explicit"],
)
def test_attention_counted_on_every_cpu_path(op: Any) -> None:
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(B, H, n, d, generator=gen) for n, d in ((LQ, E), (LK, E), (LK, E)))
    expected = B * H * LQ * LK * 2 * E
    assert count_macs(_Attention(op), (q, k, v)) == expected


def test_matmul_broadcast_linear_and_conv_formulas() -> None:
    a, b = torch.randn(4, 1, 5, 6), torch.randn(3, 6, 2)
    assert count_macs(_Lambda(lambda x, y: x @ y), (a, b)) == 4 * 3 * 5 * 6 * 2  # broadcast batch
    x = torch.randn(2, 10, 6)
    assert count_macs(nn.Linear(6, 9), x) == 2 * 10 * 6 * 9
    img = torch.randn(2, 4, 8, 8)
    conv = nn.Conv2d(4, 6, 3, padding=1, groups=2)
    assert count_macs(conv, img) == 2 * 6 * 8 * 8 * (4 // 2) * 9  # fvcore: out x Cin/g x k
    tconv = nn.ConvTranspose2d(4, 6, 2, stride=2)
    assert count_macs(tconv, img) == img.numel() * 6 * 4  # fvcore: input x Cout/g x k


class _Lambda(nn.Module):
    def __init__(self, fn: Any) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, *args: Any) -> Any:
        return self.fn(*args)


def test_op_without_formula_is_reported_not_dropped() -> None:
    model = _Lambda(lambda x: torch.histc(x, bins=4) + 0)
    with pytest.warns(RuntimeWarning, match=r"aten\.histc"):
        report = count_macs_report(model, torch.randn(10))
    assert report.uncounted == ("aten.histc",)
    assert report.total == 0


def test_attention_like_op_without_formula_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    formulas = {k: v for k, v in G.FORMULAS.items() if op_kind(k) != "attention"}
    monkeypatch.setattr(G, "FORMULAS", formulas)
    q = torch.randn(1, 2, 3, 4)
    with pytest.raises(GmacsCounterError, match=r"aten\._?scaled_dot_product.*no MAC formula on torch"):
        G._count(_Attention(torch.nn.functional.scaled_dot_product_attention), (q, q, q))


def test_matmul_like_op_without_formula_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    formulas = {k: v for k, v in G.FORMULAS.items() if k not in {"linear", "addmm", "mm", "matmul", "t"}}
    monkeypatch.setattr(G, "FORMULAS", formulas)
    with pytest.raises(GmacsCounterError, match="mm.*no MAC formula"):
        G._count(nn.Linear(3, 4), torch.randn(2, 3))


def test_self_check_passes_here_and_is_cached() -> None:
    self_check("cpu")
    assert f"cpu:{torch.__version__}" in G._CHECKED


def test_self_check_names_torch_version_and_ops(monkeypatch: pytest.MonkeyPatch) -> None:
    """An attention op counted as 0 (what torch 2.14 did to FlopCounterMode) stops everything."""
    broken = dict(G.FORMULAS)
    for name in ALL_ATTENTION_OPS:
        broken[name] = G._zero
    monkeypatch.setattr(G, "FORMULAS", broken)
    monkeypatch.setattr(G, "_CHECKED", set())
    with pytest.raises(GmacsCounterError) as info:
        self_check("cpu")
    msg = str(info.value)
    assert "\n" not in msg
    assert f"torch {torch.__version__}" in msg
    assert "fused attention" in msg and "closed form" in msg
    assert "scaled_dot_product" in msg  # the op that carried the (missing) MACs
    with pytest.raises(GmacsCounterError):  # every count refuses until the counter is right
        count_macs(nn.Linear(2, 2), torch.randn(1, 2))


def test_reference_closed_form_matches_flops_reference_block() -> None:
    model, closed = G._reference_vit()
    n, c = 17, 64
    block = 5 * n * c + n * c * 3 * c + 2 * n * n * c + n * c * c + 5 * n * c + n * c * 4 * c * 2
    assert closed == 16 * c * 192 + block + 5 * n * c + c * 10
    assert G._count(model, torch.zeros(1, 3, 32, 32)).total == closed


def test_by_kind_is_release_independent() -> None:
    by_op = {"aten.linear": 10, "aten.addmm": 5, "aten.native_layer_norm": 3, "aten.conv2d": 2}
    assert macs_by_kind(by_op) == {"conv": 2, "matmul": 15, "norm": 3}
    assert COUNTER_VERSION == "2"
    assert math.isclose(sum(macs_by_kind(by_op).values()), 20)


def _break_counter(monkeypatch: pytest.MonkeyPatch) -> None:
    broken = dict(G.FORMULAS)
    for name in ALL_ATTENTION_OPS:
        broken[name] = G._zero
    monkeypatch.setattr(G, "FORMULAS", broken)
    monkeypatch.setattr(G, "_CHECKED", set())


def test_run_stops_before_any_cell_when_the_counter_is_broken(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import yaml

    from vitbench.cli.main import main

    suite = tmp_path / "suite.yaml"
    suite.write_text(
        yaml.safe_dump(
            {
                "name": "tiny",
                "dataset": {"name": "mnist-demo", "split": "test", "limit": 8},
                "models": [{"name": "vitbench_demo_vit", "weights": "random"}],
                "methods": ["dense"],
                "keep_ratios": [1.0],
                "throughput": {"enabled": False},
            }
        )
    )
    results = tmp_path / "r.sqlite"
    _break_counter(monkeypatch)
    assert main(["run", str(suite), "--results", str(results), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: GMACs self-check failed on torch"), err
    assert not results.exists() or len(__import__("vitbench").load_results(results)) == 0
    assert main(["flops", "--model", "vitbench_demo_vit", "--method", "dense"]) == 2
    assert "GMACs self-check failed" in capsys.readouterr().err


def test_records_carry_the_counter_version() -> None:
    from vitbench.store.results import provenance

    assert provenance()["gmacs_counter"] == COUNTER_VERSION


def test_every_token_method_counts_without_unknown_ops() -> None:
    """No op of any method's forward (scored or random selection) falls outside the rules."""
    import warnings

    from vitbench.core.models import create_model
    from vitbench.measure import count_gmacs
    from vitbench.methods import METHODS, TokenMethod

    model = create_model("vitbench_demo_vit", "random")
    seen = []
    for name in METHODS.names():
        cls: Any = METHODS.get(name)
        if not issubclass(cls, TokenMethod):
            continue
        overrides = {"artifact": "init"} if getattr(cls, "trainable", False) else {}
        params = cls.params_for(0.7, model, overrides)
        for selection in cls.selections:
            with warnings.catch_warnings():
                warnings.simplefilter("error", RuntimeWarning)
                with cls.apply(model, params, selection, 0) as handle:
                    handle.set_sample_ids(None)
                    assert count_gmacs(model, (3, 32, 32)) > 0
            seen.append((name, selection))
    assert {"tome", "evit", "dynamicvit", "lfe"} <= {n for n, _ in seen}
    assert ("tome", "random") in seen
