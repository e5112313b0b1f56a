"""The runtime axis: equality with eager before speed, the side table, the view, suites and commands.

ONNX Runtime / OpenVINO tests run on the demo model (exports of a few seconds to a minute on a
busy 2-core machine) and skip with the reason when the ``deploy`` extra is not installed. Speed
is never asserted: timed values only have to exist.
"""

from __future__ import annotations

import importlib.util
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import torch

from vitbench.bench.runtimes import export_matrix
from vitbench.cli.main import main
from vitbench.core.errors import VitbenchError
from vitbench.core.models import create_model, data_config
from vitbench.harness.runner import Harness
from vitbench.harness.suites import expand, suite_from_dict
from vitbench.measure import runtimes as rt
from vitbench.measure.runtime_speed import measure_runtimes
from vitbench.methods.base import token_method
from vitbench.methods.predictorbase import descending_order
from vitbench.report.runtimes import realized_columns, runtimes_table, speedups
from vitbench.store.results import load_results
from vitbench.store.runtimes import load_runtime_rows, write_runtime_rows

DEPLOY = "the deploy extra is not installed (pip install 'vitbench[deploy]')"
HAS_ORT = all(importlib.util.find_spec(p) for p in ("onnx", "onnxscript", "onnxruntime"))
HAS_OV = all(importlib.util.find_spec(p) for p in ("onnx", "onnxscript", "openvino"))


def _demo() -> tuple[torch.nn.Module, tuple[int, ...]]:
    model = create_model("vitbench_demo_vit", "demo").eval()
    return model, tuple(data_config(model)["input_size"])


# -- the check itself (no deploy packages needed) -------------------------------------------------
def test_unknown_runtime_is_one_line() -> None:
    with pytest.raises(VitbenchError, match="unknown runtime 'tensorrt'; use one of eager, compile"):
        rt.check_runtimes(["tensorrt"])


def test_missing_package_names_the_deploy_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a)
    )
    with pytest.raises(
        VitbenchError, match=r"needs ([a-z]+, )*onnxruntime: install the deploy extra .*vitbench\[deploy\]"
    ):
        rt.check_runtimes(["eager", "onnxruntime"])
    assert main(["throughput", "--model", "vitbench_demo_vit", "--runtime", "onnxruntime"]) == 2


def test_compare_flags_a_model_that_differs_and_passes_one_that_does_not() -> None:
    model, size = _demo()
    x = rt.sample_input(size, 4)
    ref = rt.eager_logits(model, x)
    same = rt.prepare("eager", model, size, [4], 1, Path("."))
    assert rt.compare(same, ref, x).equal and rt.compare(same, ref, x).max_abs == 0.0
    shifted = rt.Prepared(
        "eager", "t", 1, "", 0.0, 0.0, lambda t: model(t) + torch.tensor([[0.0] * 9 + [0.05]])
    )
    eq = rt.compare(shifted, ref, x)
    assert not eq.equal and eq.rows_differing == 4
    assert eq.verdict().startswith("not equal (max |Δ| 5.0e-02, 4 of 4 rows")


def test_failing_op_names_the_aten_op() -> None:
    exc = RuntimeError(
        "Exporting the operator 'aten::fft_fft' to ONNX opset version 18 is not supported.\nmore"
    )
    line = rt.failing_op(exc)
    assert line.startswith("unsupported op aten::fft_fft") and "\n" not in line


def test_eager_rows_are_timed_and_ordered() -> None:
    model, size = _demo()
    rows = measure_runtimes([("dense", model)], ["eager"], [1, 2], size, threads=1, repeats=2)
    assert [(r.batch_size, r.runtime) for r in rows] == [(1, "eager"), (2, "eager")]
    assert all(r.equal and len(r.times_ms) == 2 and r.img_per_s and r.p90_ms >= r.median_ms for r in rows)


# -- side table and view ------------------------------------------------------------------------
NOT_EQUAL = "not equal (max |Δ| 2.9e-02, 4 of 32 rows above 1e-04)"


def _row(method: str, runtime: str, bs: int, gmacs: float, ms: list[float], equal: bool = True) -> dict:
    return {
        "suite": "s", "model": "m", "weights": "random", "method": method, "setting": "-",
        "keep_ratio": 0.7, "selection": "scored", "gmacs": gmacs, "runtime": runtime,
        "runtime_version": "v", "threads": 2, "dtype": "float32", "export_path": "", "export_s": 0.0,
        "prepare_s": 0.0, "batch_size": bs, "equal": int(equal), "max_abs_diff": 0.0 if equal else 0.029,
        "verdict": "equal (max |Δ| 0.0e+00)" if equal else NOT_EQUAL,
        "median_ms": None, "p90_ms": None, "img_per_s": None, "times_ms": ms, "round_id": "r1",
    }  # fmt: skip


def test_side_table_round_trip_and_view_marks_slower_and_not_equal(tmp_path: Path) -> None:
    store = tmp_path / "r.sqlite"
    rows = [
        _row("dense", "onnxruntime", 32, 4.0, [100.0, 110.0, 90.0]),
        _row("tome", "onnxruntime", 32, 2.0, [50.0, 55.0, 45.0]),  # 2x, GMACs ratio 2
        _row("lfe", "onnxruntime", 32, 2.5, [125.0, 137.5, 112.5]),  # slower than dense
        _row("dynamicvit", "onnxruntime", 32, 2.5, [], equal=False),
    ]
    assert write_runtime_rows(store, rows) == 4
    assert write_runtime_rows(store, rows[:1]) == 1  # measuring again replaces, never duplicates
    df = load_runtime_rows(store)
    assert len(df) == 4 and df.set_index("method").loc["dense", "times_ms"] == [100.0, 110.0, 90.0]
    assert load_results(store).empty  # the store stays a results store; records untouched
    s = speedups(df).set_index("method")
    assert s.loc["tome", "speedup"] == pytest.approx(2.0) and s.loc["tome", "gmacs_ratio"] == pytest.approx(
        2.0
    )
    assert s.loc["lfe", "status"] == "slower than dense" and s.loc["lfe", "speedup"] == pytest.approx(0.8)
    assert pd.isna(s.loc["dynamicvit", "speedup"]) and s.loc["dynamicvit", "status"].startswith("not equal")
    text = runtimes_table(df)
    line = next(x for x in text.splitlines() if "dynamicvit" in x)
    assert "not equal (max \\|Δ\\| 2.9e-02" in line and "img/s" not in line
    assert main(["leaderboard", "--results", str(store), "--view", "runtimes", "--format", "csv"]) == 0
    out = tmp_path / "rt.png"
    assert main(["plot", "--results", str(store), "--view", "runtimes", "--output", str(out)]) == 0
    assert out.stat().st_size > 0


def test_a_not_exportable_row_leaves_the_timed_rows_timed(tmp_path: Path) -> None:
    """NULL errors read back as '' (pandas 3 loads them as NaN, truthy, once one row has an error)."""
    store = tmp_path / "r.sqlite"
    ats = {**_row("ats", "onnxruntime", 32, 2.0, [], equal=False), "verdict": "", "error": "data-dependent"}
    rows = [
        _row("dense", "onnxruntime", 32, 4.0, [100.0, 110.0, 90.0]),
        _row("tome", "onnxruntime", 32, 2.0, [50.0, 55.0, 45.0]),
        ats,
    ]
    write_runtime_rows(store, rows)
    df = load_runtime_rows(store)
    assert df.set_index("method").loc["tome", "error"] == ""
    s = speedups(df).set_index("method")
    assert s.loc["tome", "speedup"] == pytest.approx(2.0) and s.loc["tome", "status"] == "ok"
    text = runtimes_table(df)
    assert "ats: GMACs vary per image; their ratio is that of the GMACs counter's one synthetic input" in text
    tome = next(x for x in text.splitlines() if "| tome" in x)
    assert "2.00 (" in tome and "| ok" in tome
    from vitbench.report.runtimes import _realized_cell

    latest = speedups(df).to_dict("records")
    cells = {r["method"]: _realized_cell(r) for r in latest}
    assert cells["tome"].startswith("2.00 (") and cells["ats"] == "not exportable"


def test_realized_columns_per_runtime_and_batch_mark_slower_and_not_equal(tmp_path: Path) -> None:
    store = tmp_path / "r.sqlite"
    rows = [
        _row("dense", "onnxruntime", 32, 4.0, [100.0, 110.0, 90.0]),
        _row("tome", "onnxruntime", 32, 2.0, [50.0, 55.0, 45.0]),
        _row("lfe", "onnxruntime", 32, 2.5, [125.0, 137.5, 112.5]),
        _row("dynamicvit", "onnxruntime", 32, 2.5, [], equal=False),
        _row("dense", "eager", 1, 4.0, [10.0, 10.0]),
        _row("tome", "eager", 1, 2.0, [8.0, 8.0]),
    ]
    write_runtime_rows(store, rows)
    stats = pd.DataFrame(
        {"model": "m", "method": ["dense", "tome", "lfe", "dynamicvit", "evit"], "setting": "-"}
    )
    cols = realized_columns(stats, str(store))
    assert [c.header for c in cols] == [
        "eager b1 speedup (GMACs ratio)",
        "onnxruntime b32 speedup (GMACs ratio)",
    ]  # runtimes in table order, then batch size
    assert cols[0].shown == ["–", "1.25 (2.00)", "–", "–", "–"]
    assert cols[1].shown == ["–", "2.00 (2.00)", "0.80 (1.60) slower", "≠ eager", "–"]
    assert cols[1].raw[1] == pytest.approx(2.0) and pd.isna(cols[1].raw[3])
    assert realized_columns(stats, str(store), suite="other") == []  # another suite's rows: no columns
    assert realized_columns(stats, None) == []


def test_view_of_a_store_without_runtime_rows_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    store = tmp_path / "r.sqlite"
    write_runtime_rows(store, [])
    assert main(["leaderboard", "--results", str(store), "--view", "runtimes"]) == 2
    assert "no runtime measurements" in capsys.readouterr().err


# -- suites --------------------------------------------------------------------------------------
TINY = {
    "name": "tiny-runtimes",
    "dataset": {"name": "mnist-demo", "split": "test", "limit": 12},
    "models": [{"name": "vitbench_demo_vit", "weights": "demo"}],
    "methods": ["dense", "tome"],
    "keep_ratios": [0.7],
    "batch_size": 12,
    "bootstrap": 10,
}


def test_suite_runtime_key_is_validated_and_not_part_of_the_suite_identity() -> None:
    plain = suite_from_dict({**TINY, "throughput": {"enabled": False}})
    axis = suite_from_dict(
        {**TINY, "throughput": {"enabled": False, "runtimes": ["eager"], "batch_sizes": [1, 2]}}
    )
    assert axis.throughput.runtimes == ("eager",) and axis.throughput.batch_sizes == (1, 2)
    assert plain.to_dict() == axis.to_dict()
    with pytest.raises(VitbenchError, match="unknown runtime 'tvm'"):
        suite_from_dict({**TINY, "throughput": {"runtimes": ["tvm"]}})
    with pytest.raises(VitbenchError, match="batch_sizes must be a list of integers >= 1"):
        suite_from_dict({**TINY, "throughput": {"runtimes": ["eager"], "batch_sizes": [0]}})


def test_runtime_phase_runs_after_the_cells_into_the_side_table(tmp_path: Path) -> None:
    axis = {"enabled": False, "runtimes": ["eager"], "batch_sizes": [1, 2], "repeats": 2, "threads": 1}
    suite = suite_from_dict({**TINY, "methods": ["tome"], "throughput": axis})  # dense is added
    store = tmp_path / "r.sqlite"
    logs: list[str] = []
    summary = Harness(suite, str(store), progress=False, log=logs.append).run(expand(suite))
    assert summary.failed == 0, summary.errors
    records = load_results(store)
    assert list(records["method"]) == ["tome"]  # accuracy cells only
    df = load_runtime_rows(store)
    assert sorted(zip(df["method"], df["batch_size"])) == [
        ("dense", 1),
        ("dense", 2),
        ("tome", 1),
        ("tome", 2),
    ]
    assert (
        df["equal"].all()
        and (df["threads"] == 1).all()
        and df["runtime_version"].str.startswith("torch").all()
    )
    assert any("runtime phase" in line for line in logs)
    for view in (["--view", "main"], ["--paper"]):  # the paper views show the realized speedup
        out = tmp_path / "main.md"
        assert main(["leaderboard", "--results", str(store), *view, "--output", str(out)]) == 0
        text = out.read_text()
        assert "eager b1 speedup (GMACs ratio)" in text and "eager b2 speedup (GMACs ratio)" in text
        assert "realized speedup over dense in the same runtime" in text
        tome = next(line for line in text.splitlines() if "| tome" in line)
        assert re.search(r"\d\.\d\d \(\d\.\d\d\)", tome), tome
    again: list[str] = []
    Harness(suite, str(store), progress=False, log=again.append).run(expand(suite))  # resumed
    assert any("runtime phase already in" in line for line in again)
    assert len(load_runtime_rows(store)) == 4


# -- ONNX Runtime and OpenVINO on the demo model ---------------------------------------------------
@pytest.fixture(scope="module")
def exported() -> Iterator[dict[str, tuple[torch.nn.Module, Path]]]:
    """Dense and ToMe r=5 on the demo model, exported once each (shared by both runtimes)."""
    if not (HAS_ORT or HAS_OV):
        pytest.skip(DEPLOY)
    model, size = _demo()
    tome = token_method("tome")
    tome_model = create_model("vitbench_demo_vit", "demo").eval()
    with tempfile.TemporaryDirectory() as tmp, tome.apply(tome_model, tome.params_for(0.7, tome_model)):
        out = {}
        for name, m in (("dense", model), ("tome", tome_model)):
            path, _s = rt.export_onnx(m, size, Path(tmp) / f"{name}.onnx")
            out[name] = (m, path)
        yield out


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
@pytest.mark.parametrize("variant", ["dense", "tome"])
def test_exported_demo_model_equals_eager_at_batch_1_and_32(
    exported: dict, runtime: str, variant: str
) -> None:
    if not {"onnxruntime": HAS_ORT, "openvino": HAS_OV}[runtime]:
        pytest.skip(DEPLOY)
    model, path = exported[variant]
    size = tuple(data_config(model)["input_size"])
    prep = rt.prepare(runtime, model, size, [1, 32], 1, path.parent, onnx_file=path)
    assert prep.version.startswith(runtime) and prep.threads == 1 and "dynamic batch" in prep.export_path
    for bs in (1, 32):
        x = rt.sample_input(size, bs, seed=3)
        eq = rt.compare(prep, rt.eager_logits(model, x), x)
        assert eq.equal, eq.verdict()


@pytest.mark.slow
@pytest.mark.skipif(not HAS_OV, reason=DEPLOY)
def test_check_catches_random_tokens_in_openvino() -> None:
    """The seeded random scores are an int64 hash; OpenVINO's CPU plugin computes it otherwise."""
    _, size = _demo()
    model = create_model("vitbench_demo_vit", "demo").eval()
    rnd = token_method("random-tokens")
    with tempfile.TemporaryDirectory() as tmp, rnd.apply(model, rnd.params_for(0.7, model)):
        prep = rt.prepare("openvino", model, size, [8], 1, Path(tmp))
        x = rt.sample_input(size, 8, seed=0)
        eq = rt.compare(prep, rt.eager_logits(model, x), x)
    assert not eq.equal and eq.verdict().startswith("not equal")


class _MeanMerge(torch.nn.Module):
    """Merges token 1 into token 0 with ``scatter_reduce(reduce="mean")``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.flatten(2).transpose(1, 2)  # [B, H*W, C]
        idx = torch.zeros(t.shape[0], 1, t.shape[2], dtype=torch.long)
        return t[:, :1].scatter_reduce(1, idx, t[:, 1:2], reduce="mean").flatten(1)


def test_scatter_mean_is_refused_before_export_naming_the_line(tmp_path: Path) -> None:
    """onnxscript writes scatter_reduce mean as an overwrite: refused in one line, nothing exported."""
    size = (3, 4, 4)
    hazard = rt.onnx_hazard(_MeanMerge(), rt.sample_input(size, 2))
    assert hazard is not None and "\n" not in hazard
    line = r"scatter_reduce\(reduce='mean'\) at test_runtimes\.py:\d+ is exported by torch\.onnx as an"
    assert re.search(line, hazard)
    if HAS_ORT:
        with pytest.raises(rt.ExportError, match=r"^ONNX export: " + line):
            rt.export_onnx(_MeanMerge(), size, tmp_path / "m.onnx")
        assert not (tmp_path / "m.onnx").exists()
    model, size = _demo()
    assert rt.onnx_hazard(model, rt.sample_input(size, 2)) is None


@pytest.mark.skipif(not HAS_ORT, reason=DEPLOY)
def test_diffrate_with_searched_rates_exports_equal() -> None:
    """The demo model's searched DiffRate rates (counts that vary by block) merge several sources into
    one token: the merge is a scatter sum over a count, so ONNX Runtime computes the same mean."""
    table, (res,) = export_matrix(
        "vitbench_demo_vit", ["diffrate"], weights="demo", check=["onnxruntime"], threads=1, log=print
    )
    assert res.error is None and res.equal, [(rt_, b, eq.verdict()) for rt_, b, eq in res.checks]


def test_descending_order_puts_equal_scores_in_index_order() -> None:
    gen = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 4, (16, 30), generator=gen).float()  # many ties
    stable = torch.sort(scores, dim=1, descending=True, stable=True).indices
    assert torch.equal(descending_order(scores), stable)
    distinct = torch.randn(4, 30, generator=gen)
    assert torch.equal(descending_order(distinct), torch.argsort(distinct, dim=1, descending=True))


@pytest.mark.skipif(not (HAS_ORT and HAS_OV), reason=DEPLOY)
def test_export_matrix_of_methods_not_timed_in_the_reference_table() -> None:
    """dTPS (untrained predictors: tied scores at batch 32), eTPS and NViT on the demo model."""
    table, res = export_matrix(
        "vitbench_demo_vit", ["dtps", "etps", "nvit"], weights="demo", threads=1, log=lambda _m: None
    )
    assert [r.method for r in res] == ["dtps", "etps", "nvit"]
    for r in res:
        assert r.equal, (r.method, r.error, [(rt_, b, eq.verdict()) for rt_, b, eq in r.checks])
        assert [(rt_, b) for rt_, b, _eq in r.checks] == [
            ("onnxruntime", 1), ("onnxruntime", 32), ("openvino", 1), ("openvino", 32)
        ]  # fmt: skip
    lines = table.splitlines()
    assert lines[0].startswith("| method | setting | export s | onnxruntime b1 |") and len(lines) == 5
    assert "equal (max \\|Δ\\|" in lines[2]


@pytest.mark.skipif(not HAS_ORT, reason=DEPLOY)
def test_a_method_that_cannot_export_is_one_row_naming_the_line() -> None:
    """ATS keeps a per-image token count: the batch is padded to int(counts.max()), a data-dependent shape."""
    table, (res,) = export_matrix(
        "vitbench_demo_vit", ["ats"], weights="demo", check=["onnxruntime"], threads=1, log=lambda _m: None
    )
    assert not res.equal and res.checks == ()
    assert res.error is not None and res.error.startswith("not exportable: ONNX export: data-dependent shape")
    assert "ats.py:" in res.error and "counts.max()" in res.error and "\n" not in res.error
    assert table.splitlines()[2].startswith("| ats | – | not exportable")


def test_export_all_arguments_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    if not HAS_ORT:
        pytest.skip(DEPLOY)
    base = ["export", "--model", "vitbench_demo_vit", "--check", "onnxruntime"]
    assert main([*base, "--all", "--output", str(tmp_path / "m.onnx")]) == 2
    assert "--all keeps no .onnx files" in capsys.readouterr().err
    assert main([*base, "--all", "--method", "tome"]) == 2
    assert "leave out --method" in capsys.readouterr().err
    assert main(base) == 2
    assert "export needs --output" in capsys.readouterr().err
    assert main([*base, "--table", str(tmp_path / "t.md"), "--output", str(tmp_path / "m.onnx")]) == 2
    assert "--table writes the table of --all" in capsys.readouterr().err


@pytest.mark.skipif(not HAS_ORT, reason=DEPLOY)
def test_export_command_prints_one_verdict_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "dense.onnx"
    argv = ["export", "--model", "vitbench_demo_vit", "--method", "dense", "--output", str(out)]
    assert main([*argv, "--check", "onnxruntime", "--batch-size", "1", "--batch-size", "3"]) == 0
    line = capsys.readouterr().out.strip()
    assert "\n" not in line and line.startswith(f"wrote {out}") and out.stat().st_size > 0
    assert "onnxruntime b1 equal" in line and "onnxruntime b3 equal" in line


def test_export_failure_is_one_line_naming_the_op(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    if not HAS_ORT:
        pytest.skip(DEPLOY)

    def fail(*_a: object, **_k: object) -> None:
        raise RuntimeError("Exporting the operator 'aten::fft_fft' to ONNX opset version 18 is not supported")

    monkeypatch.setattr(torch.onnx, "export", fail)
    argv = ["export", "--model", "vitbench_demo_vit", "--method", "lfe", "--output", str(tmp_path / "m.onnx")]
    assert main([*argv, "--check", "onnxruntime"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ONNX export: unsupported op aten::fft_fft") and "\n" not in err


@pytest.mark.slow
def test_compile_equals_eager_on_the_demo_model_at_batch_1() -> None:
    model, size = _demo()
    prep = rt.prepare("compile", model, size, [1], 1, Path("."))
    x = rt.sample_input(size, 1, seed=5)
    assert rt.compare(prep, rt.eager_logits(model, x), x).equal
    assert rt.compile_path(prep).startswith("torch.compile(inductor")
