"""VTC-LFC cascade: budget, schedule, artifacts, combined slim + token model, bad inputs."""

from __future__ import annotations

import json

import pytest
import torch

from vbtest import make_model, model_input
from vitbench.core.errors import VitbenchError
from vitbench.measure import count_gmacs
from vitbench.measure.accuracy import top1_pct
from vitbench.methods import METHODS
from vitbench.methods.lfe import lfe_schedule
from vitbench.methods.slimming.slim import dims_macs, model_dims
from vitbench.methods.vtclfc import (
    VTCLFCParams,
    cascade,
    load_result,
    save_result,
    with_tokens,
)


def _calib(model: torch.nn.Module, n: int = 96) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Labels = the model's own predictions, so the dense model is 100 % right on them."""
    x = model_input(model, batch=n, seed=3)
    with torch.no_grad():
        y = model(x).argmax(-1)
    return [(x[i : i + 32], y[i : i + 32]) for i in range(0, n, 32)]


@pytest.fixture(scope="module")
def result():
    model = make_model("depth12")
    calib = _calib(model, 64)
    params = VTCLFCParams(allowable_drop=18.0, num_samples=32, eval_samples=64)
    return model, calib, params, cascade(model, calib, params, blocks=[0, 1, 2])


def test_cascade_respects_budget(result) -> None:
    model, calib, params, res = result
    b = params.allowable_drop / 3
    assert len(res.history) == 3
    for rec in res.history:
        assert rec["acc_after"] >= rec["acc0"] - b - 1e-9
        assert rec["acc_after_tokens"] >= rec["acc0"] - b * params.drop_for_token - 1e-9
    for prev, nxt in zip(res.history, res.history[1:]):
        assert nxt["acc0"] == pytest.approx(prev["acc_after"])
    x = torch.cat([c[0] for c in calib])
    y = torch.cat([c[1] for c in calib])
    with with_tokens(res.model, res.token_cfg):
        acc = top1_pct(res.model, x, y)
    assert acc == pytest.approx(res.history[-1]["acc_after"])
    assert acc >= 100.0 - params.allowable_drop - 1e-9
    # something was pruned, blocks after 2 keep their channels
    assert any(r["mlp"] < 256 or r["heads"] < 2 or r["d_qk"] < 32 for r in res.history)
    assert res.token_cfg[0] >= 15  # block 0 keeps at least floor(16 * 190/196) tokens
    assert list(res.token_cfg) == sorted(res.token_cfg, reverse=True)
    assert model_dims(res.model).blocks[3:] == model_dims(model).blocks[3:]


def _closed_form(dims, token_cfg, patches=16, patch_in=192, classes=10) -> int:
    """fvcore-convention MACs with per-block token counts (selection between attention and MLP)."""
    e, n = dims.embed, 1 + patches
    total = patches * patch_in * e
    for (h, dqk, dv, m), t in zip(dims.blocks, token_cfg):
        total += 5 * n * e + n * e * h * (2 * dqk + dv) + n * n * h * (dqk + dv) + n * h * dv * e
        n = min(n, 1 + t)
        total += 5 * n * e + 2 * n * e * m
    return total + 5 * n * e + e * classes


def test_plan_and_gmacs_match_closed_form(result) -> None:
    from vitbench.methods.slimming.slim import slim_model

    model, _calib_, _params, res = result
    x = model_input(model, batch=2)
    torch.testing.assert_close(slim_model(model, res.plan)(x), res.model(x))
    dims = model_dims(res.model)
    assert count_gmacs(res.model, (3, 32, 32)) * 1e9 == pytest.approx(dims_macs(dims, 17, 16, 192, 10))
    with with_tokens(res.model, res.token_cfg) as h:
        gm = count_gmacs(res.model, (3, 32, 32))
        assert h.tokens_per_block == lfe_schedule(res.model, tuple(res.token_cfg))
    assert gm * 1e9 == pytest.approx(_closed_form(dims, res.token_cfg))
    assert gm < count_gmacs(model, (3, 32, 32))


def test_artifact_roundtrip_and_foreign_model(result, tmp_path) -> None:
    model, _calib_, _params, res = result
    path = save_result(tmp_path / "cascade.safetensors", res, "vitbench_demo_vit")
    loaded, cfg, meta = load_result(model, path, "vitbench_demo_vit")
    assert cfg == res.token_cfg and meta["history"] == res.history
    x = model_input(model, batch=2)
    with with_tokens(loaded, cfg), with_tokens(res.model, res.token_cfg):
        torch.testing.assert_close(loaded(x), res.model(x))
    with pytest.raises(VitbenchError, match="pruned from 'vitbench_demo_vit'"):
        load_result(model, path, "test_vit")
    other = make_model("vit")
    with pytest.raises(VitbenchError, match="does not fit"):
        load_result(other, path, "vitbench_demo_vit")


def test_cascade_scores_with_official_filter_and_seeded_drop_path(monkeypatch) -> None:
    import vitbench.methods.vtclfc as vtclfc

    params = VTCLFCParams(allowable_drop=6.0, num_samples=16, eval_samples=32)
    assert (params.lowpass, params.drop_path) == ("official", 0.1)  # official filter, --drop-path 0.1
    seen = []
    real = vtclfc.lfs_scores

    def spy(model, calib, crit, blocks=None, feature_block=None):
        seen.append((blocks, crit))
        return real(model, calib, crit, blocks, feature_block)

    monkeypatch.setattr(vtclfc, "lfs_scores", spy)
    model = make_model("depth12")
    calib = _calib(model, 32)
    first = cascade(model, calib, params, blocks=[0, 1])
    assert [b for b, _ in seen] == [[0], [1]]
    for blocks, crit in seen:
        assert (crit.filter, crit.drop_path, crit.lowpass) == ("official", 0.1, True)
        assert crit.seed == params.criterion(blocks[0]).seed
    assert seen[0][1].seed != seen[1][1].seed  # each block draws its own stochastic depth
    again = cascade(model, calib, params, blocks=[0, 1])
    assert again.plan == first.plan and again.token_cfg == first.token_cfg  # reproducible
    sym = VTCLFCParams(lowpass="symmetric", drop_path=0.0)
    assert (sym.criterion(3).filter, sym.criterion(3).drop_path) == ("symmetric", 0.0)
    with pytest.raises(VitbenchError, match="official, symmetric"):
        METHODS.get("vtc-lfc").params_for(0.5, model, {"lowpass": "box"})


def test_zero_budget_is_identity() -> None:
    model = make_model("depth12")
    calib = _calib(model, 32)
    res = cascade(
        model, calib, VTCLFCParams(allowable_drop=0.0, num_samples=8, eval_samples=32), blocks=[0, 1]
    )
    x = model_input(model, batch=2)
    with with_tokens(res.model, res.token_cfg):
        torch.testing.assert_close(res.model(x), model(x))


def test_bad_inputs() -> None:
    model = make_model("depth12")
    cls = METHODS.get("vtc-lfc")
    with pytest.raises(VitbenchError, match="empty"):
        cls.prune(model, cls.params_for(0.5, model), [])
    with pytest.raises(VitbenchError, match="allowable_drop"):
        cls.params_for(0.5, model, {"allowable_drop": -1})
    with pytest.raises(VitbenchError, match="positive"):
        cls.params_for(0.5, model, {"cutoff": 0})
    with pytest.raises(VitbenchError, match="lfs_lambda"):
        cls.params_for(0.5, model, {"lfs_lambda": -0.5})
    calib = _calib(model, 32)
    params = cls.params_for(
        0.5,
        model,
        {
            "allowable_drop": 0.0,
            "max_gmacs_frac": 0.5,
            "num_samples": 8,
            "eval_samples": 32,
            "prune_blocks": [0],
        },
    )
    with pytest.raises(VitbenchError, match=r"reached 100\.0% of dense GMACs .* raise allowable_drop"):
        cls.prune(model, params, calib)
    with pytest.raises(VitbenchError, match="prune_blocks"):
        cls.prune(model, cls.params_for(0.5, model, {"prune_blocks": [12]}), calib)


def test_harness_runs_cascade_with_token_schedule(tmp_path, monkeypatch) -> None:
    from vitbench.core.models import create_model
    from vitbench.harness.pruned import load_pruned
    from vitbench.harness.runner import Harness
    from vitbench.harness.suites import expand, suite_from_dict
    from vitbench.store.results import load_results

    monkeypatch.setenv("VITBENCH_ARTIFACTS", str(tmp_path / "artifacts"))
    raw = {
        "name": "vtc-tiny",
        "dataset": {"name": "mnist-demo", "split": "test", "limit": 40},
        "models": [{"name": "vitbench_demo_vit", "weights": "demo"}],
        "methods": [
            {
                "name": "vtc-lfc",
                "params": {
                    "allowable_drop": 30,
                    "num_samples": 16,
                    "eval_samples": 32,
                    "prune_blocks": [0, 1],
                },
            },
            {"name": "lfs", "params": {"num_samples": 16}},
        ],
        "keep_ratios": [0.5],
        "calib_noise": {"name": "gaussian-noise", "level": 2},
        "calib": {"n_images": 32, "batch_size": 16},
        "batch_size": 20,
        "bootstrap": 20,
        "throughput": False,
        "cache_dir": "off",
    }
    suite = suite_from_dict(raw)
    logs: list[str] = []
    h = Harness(suite, str(tmp_path / "r.sqlite"), progress=False, log=logs.append, cache=False)
    summary = h.run(expand(suite))
    assert summary.failed == 0, summary.errors
    df = load_results(str(tmp_path / "r.sqlite")).set_index("method")
    assert set(df["calib_noise"]) == {"gaussian-noise"}
    vtc = df.loc["vtc-lfc"]
    arts = sorted((tmp_path / "artifacts").glob("vtc-lfc-*.safetensors"))
    assert arts
    pruned = load_pruned(arts[0], create_model("vitbench_demo_vit", "demo"))
    cfg = pruned.vb_token_cfg
    assert json.loads(vtc["tokens_per_block"]) == lfe_schedule(pruned, cfg)
    assert vtc["gmacs"] < 0.018034896
    assert df.loc["lfs", "gmacs"] < 0.018034896


def test_one_unit_mlp_is_scored_and_pruned_without_squeezing(monkeypatch) -> None:
    """Deviation C: a block whose fc1 has one output channel stays a 1-dim score and the cascade goes on.

    The official scoring turns a one-row fc1 score into a 0-dim tensor (``.squeeze()``,
    deit_pruning_tools.py line 229) that its ``torch.cat`` rejects (line 273).
    """
    import vitbench.methods.vtclfc as vtclfc
    from vitbench.methods.slimming.taylor import structure_block
    from vitbench.methods.slimming.slim import BlockPlan, SlimPlan, slim_model

    dense = make_model("depth12")
    base = SlimPlan.identity(dense)
    b0 = base.blocks[0]
    plan = SlimPlan(base.embed, (BlockPlan(b0.heads, b0.qk, b0.v, (7,)), *base.blocks[1:]))
    model = slim_model(dense, plan)
    assert model_dims(model).blocks[0][3] == 1 and model.blocks[0].mlp.fc1.weight.shape[0] == 1
    seen = []
    real = vtclfc.lfs_scores

    def spy(*a, **k):
        out = real(*a, **k)
        seen.append({b: (q.shape, f.shape) for b, (q, f) in out.items()})
        return out

    monkeypatch.setattr(vtclfc, "lfs_scores", spy)
    calib = _calib(model, 16)
    params = VTCLFCParams(allowable_drop=4.0, num_samples=8, eval_samples=16)
    res = cascade(model, calib, params, blocks=[0, 1])
    assert seen[0][0][1] == (1,)  # block 0's fc1 score: one channel, still a vector
    assert [r["block"] for r in res.history] == [0, 1]  # the cascade went on to block 1
    assert res.history[0]["mlp"] == 1  # the single unit is kept (every block keeps >= 1)
    x = model_input(model, batch=2)
    with torch.no_grad(), with_tokens(res.model, res.token_cfg):
        assert torch.isfinite(res.model(x)).all()
    # a one-unit MLP below the threshold keeps its unit, as a 1-dim index list
    h, dqk, dv, _m = model_dims(model).blocks[0]
    bp = structure_block(torch.rand(h * (2 * dqk + dv)), torch.tensor([0.5]), 1.0, h, dqk, dv)
    assert bp.mlp == (0,)
