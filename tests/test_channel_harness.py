"""Channel cells in the harness: calibration loader, prune once (artifact reuse), fine-tune, errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vitbench.core.errors import VitbenchError
from vitbench.core.models import create_model, data_config
from vitbench.harness.pruned import calibration_batches, load_pruned
from vitbench.harness.runner import Harness
from vitbench.harness.suites import expand, suite_from_dict
from vitbench.methods import METHODS
from vitbench.store.results import load_results

SUITE = {
    "name": "channel-tiny",
    "dataset": {"name": "mnist-demo", "split": "test", "limit": 40},
    "models": [{"name": "vitbench_demo_vit", "weights": "demo"}],
    "methods": [
        "random-channels",
        "magnitude",
        {"name": "nvit", "params": {"steps": 1, "latency_weight": 0}},
    ],
    "keep_ratios": [0.6],
    "noises": ["clean", {"name": "gaussian-noise", "levels": [2]}],
    "calib": {"n_images": 24, "batch_size": 8},
    "batch_size": 20,
    "bootstrap": 20,
    "throughput": False,
    "cache_dir": "off",
}


@pytest.fixture()
def artifacts_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    out = tmp_path / "artifacts"
    monkeypatch.setenv("VITBENCH_ARTIFACTS", str(out))
    monkeypatch.setenv("VITBENCH_CACHE", str(tmp_path / "cache"))
    return out


def _harness(tmp_path: Path, raw: dict, logs: list[str]) -> tuple[Harness, list]:
    suite = suite_from_dict(raw)
    return Harness(suite, str(tmp_path / "r.sqlite"), progress=False, log=logs.append, cache=False), expand(
        suite
    )


def test_channel_cells_prune_once_and_reuse_artifact(tmp_path: Path, artifacts_dir: Path) -> None:
    logs: list[str] = []
    h, cells = _harness(tmp_path, SUITE, logs)
    summary = h.run(cells)
    assert summary.failed == 0, summary.errors
    df = load_results(str(tmp_path / "r.sqlite"))
    assert set(df["family"]) == {"baseline", "channel"}
    # every record says which images calibrated it: 24 train images drawn with the seed
    assert (df["calib_images"] == 24).all() and (df["calib_split"] == "train").all()
    assert df["calib_ids_hash"].nunique() == 1 and (df["calib_ids_hash"] != df["sample_ids_hash"]).all()
    from vitbench.report.tables import leaderboard

    assert "channel methods pruned on 24 train images" in leaderboard(df)
    dense_gmacs = 0.018034896  # the demo model, batch 1 (`vitbench flops --model vitbench_demo_vit`)
    for _, row in df.iterrows():
        assert abs(row["gmacs"] / dense_gmacs - 0.6) <= 0.02 * 0.6 + 1e-4, (row["method"], row["gmacs"])
        assert row["tokens_kept_frac"] == 1.0
    # one pruning per method: both noise levels reuse it; artifacts written and reloadable
    assert sum("pruned " in line for line in logs) == 3
    files = sorted(artifacts_dir.glob("*.safetensors"))
    assert len(files) == 3
    dense = create_model("vitbench_demo_vit", "demo")
    model = load_pruned(files[0], dense)
    assert sum(p.numel() for p in model.parameters()) < sum(p.numel() for p in dense.parameters())
    # a new harness (new process) finds the artifacts instead of pruning again
    logs2: list[str] = []
    h2, cells2 = _harness(tmp_path / "again", SUITE, logs2)
    assert h2.run(cells2).failed == 0
    assert not any("pruned " in line for line in logs2)
    again = load_results(str(tmp_path / "again" / "r.sqlite"))
    assert list(again.sort_values("cell_key")["top1"]) == list(df.sort_values("cell_key")["top1"])


def test_calibration_noise_changes_batches_and_is_seeded(tmp_path: Path) -> None:
    suite = suite_from_dict({**SUITE, "calib_noise": {"name": "gaussian-noise", "level": 3}})
    clean = suite_from_dict(SUITE)
    model = create_model("vitbench_demo_vit", "random")
    cfg = data_config(model)
    cell = expand(suite)[0]
    noisy = calibration_batches(suite, cell, cfg, False)
    noisy2 = calibration_batches(suite, cell, cfg, False)
    plain = calibration_batches(clean, expand(clean)[0], cfg, False)
    assert [x.shape[0] for x, _ in noisy] == [8, 8, 8]
    assert all(torch.equal(a[0], b[0]) for a, b in zip(noisy, noisy2))
    assert all(torch.equal(a[1], b[1]) for a, b in zip(noisy, plain))  # same images, same labels
    assert not torch.equal(noisy[0][0], plain[0][0])
    # through the corrupted-image cache: one entry, the same images as in memory
    from vitbench.data.cache import CorruptionCache

    cache = CorruptionCache(tmp_path / "cache", progress=False, log=lambda _m: None)
    cached = calibration_batches(suite, cell, cfg, cache)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(cached, noisy)) and len(cache.entries()) == 1


def test_finetune_after_pruning_changes_weights(tmp_path: Path, artifacts_dir: Path) -> None:
    raw = {
        **SUITE,
        "methods": [{"name": "magnitude", "params": {"finetune_epochs": 0.02}}],
        "noises": ["clean"],
        "train": {"batch_size": 16, "dataset": {"name": "mnist-demo", "limit": 64}},
    }
    logs: list[str] = []
    h, cells = _harness(tmp_path, raw, logs)
    assert h.run(cells).failed == 0, logs
    files = sorted(artifacts_dir.glob("*.safetensors"))
    assert len(files) == 2  # pruned, then pruned + fine-tuned
    dense = create_model("vitbench_demo_vit", "demo")
    a, b = (load_pruned(f, dense) for f in files)
    diffs = [not torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values())]
    assert any(diffs)
    assert any("fine-tuning magnitude" in line for line in logs)


def test_empty_calibration_and_bad_inputs_are_one_line_errors(tmp_path: Path) -> None:
    model = create_model("vitbench_demo_vit", "random")
    nvit = METHODS.get("nvit")
    with pytest.raises(VitbenchError, match="calibration loader is empty") as err:
        nvit.prune(model, nvit.params_for(0.5, model), [])
    assert "\n" not in str(err.value)
    with pytest.raises(VitbenchError, match="calib"):
        suite_from_dict({**SUITE, "calib": {"n_images": 0}})
    with pytest.raises(VitbenchError, match="unknown key"):
        suite_from_dict({**SUITE, "calib": {"images": 3}})
    suite = suite_from_dict({**SUITE, "calib": {"split": "validation"}})
    with pytest.raises(VitbenchError, match="calibration loader") as err:
        calibration_batches(suite, expand(suite)[0], data_config(model), False)
    assert "\n" not in str(err.value)


def test_cells_get_their_model_from_their_contract_builder(tmp_path: Path, artifacts_dir: Path) -> None:
    """Token cells patch the shared model, channel cells get a pruned one from the provider (memoised)."""
    from vitbench.methods.base import Method

    logs: list[str] = []
    raw = {**SUITE, "methods": ["evit", "magnitude"], "noises": ["clean"]}
    h, cells = _harness(tmp_path, raw, logs)
    dense = h.model(cells[0].model)
    token_cell, channel_cell = cells
    evit, magnitude = METHODS.get("evit"), METHODS.get("magnitude")
    assert h.builder(evit) == h._token_cell and h.builder(magnitude) == h._channel_cell
    params = evit.params_for(0.6, dense)
    built = h.builder(evit)(token_cell, evit, params, dense)
    assert built.model is dense and built.params == params and built.cost_scope is None
    built.apply.__exit__(None, None, None)
    params = magnitude.params_for(0.6, dense)
    built = h.builder(magnitude)(channel_cell, magnitude, params, dense)
    assert built.model is not dense and built.cost_scope == (channel_cell.calib_noise, channel_cell.seed)
    assert h.pruned.model(channel_cell, magnitude, params, dense) is built.model  # one prune, memoised
    assert sum("pruned magnitude" in line for line in logs) == 1
    built.apply.__exit__(None, None, None)

    class Neither(Method):
        name = "neither"

    with pytest.raises(VitbenchError, match="neither a TokenMethod nor a ChannelMethod"):
        h.builder(Neither)
