"""`vitbench throughput`: methods x keep ratios x batch sizes x dtypes, realized speedup column."""

from __future__ import annotations

import pytest

from vitbench.cli.main import main

BASE = ["throughput", "--model", "test_vit", "--rounds", "1", "--repeats", "1", "--warmup", "0"]


def test_throughput_grid(capsys: pytest.CaptureFixture[str]) -> None:
    args = [*BASE, "--method", "tome", "--method", "dtps", "--keep", "0.7", "--keep", "0.5"]
    args += [
        "--batch-size",
        "1",
        "--batch-size",
        "2",
        "--dtype",
        "float32",
        "--dtype",
        "bf16",
        "--channels-last",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("test_vit, random weights, cpu") and "channels_last" in out
    rows = [ln.split("|")[1:-1] for ln in out.splitlines() if ln.startswith("| ") and "method" not in ln]
    assert len(rows) == 2 * 2 * (1 + 2 * 2)  # dtypes x batches x (dense + methods x keeps)
    cells = [[c.strip() for c in r] for r in rows]
    assert {c[2] for c in cells} == {"float32", "bfloat16"} and {c[3] for c in cells} == {"1", "2"}
    for c in cells:
        gmacs_ideal, measured, realized = float(c[7]), float(c[8]), c[9]
        if c[0] == "dense":
            assert gmacs_ideal == 1.0 and measured == 1.0 and realized == "-"
        else:
            # each figure is printed rounded; allow exactly that rounding (timings vary under load)
            half = [0.5 * 10.0 ** -len(x.split(".")[1]) if "." in x else 0.5 for x in (c[7], c[8], realized)]
            tol = half[1] / gmacs_ideal + measured * half[0] / gmacs_ideal**2 + half[2] + 1e-9
            assert gmacs_ideal > 1.0 and float(realized) == pytest.approx(measured / gmacs_ideal, abs=tol)


def test_throughput_fp16_on_cpu_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*BASE, "--method", "evit", "--dtype", "fp16"]) == 2
    assert "float16 throughput on CPU is not supported" in capsys.readouterr().err


def test_throughput_names_adaptive_methods_under_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    """ATS's GMACs in `vitbench throughput` are the counter's synthetic input: the table says so."""
    from vitbench.cli.main import main

    args = ["throughput", "--model", "vitbench_demo_vit", "--method", "ats", "--keep", "0.5"]
    assert main([*args, "--batch-size", "2", "--repeats", "1", "--rounds", "1", "--warmup", "0"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1].startswith("ats: GMACs vary per image; the GMACs here are those of the counter's one")
