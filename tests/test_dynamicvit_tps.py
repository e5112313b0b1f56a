"""DynamicViT, eTPS and dTPS: hand-computed squeeze, masking vs dropping, training, artifacts, GMACs."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import timm
import torch
import yaml

import vitbench.core.demo  # noqa: F401  (registers the demo architecture)
from vitbench.cli.main import main
from vitbench.core.errors import VitbenchError
from vitbench.harness.suites import suite_from_dict
from vitbench.measure import count_gmacs
from vitbench.methods import METHODS
from vitbench.methods import tps as tps_mod
from vitbench.methods.evit import EViTParams
from vitbench.methods.patching.patch import ForwardState
from vitbench.methods.patching.squeeze import squeeze, squeeze_dense
from vitbench.methods.predictorbase import DynamicState, decide
from vitbench.methods.stagebase import reduce_tokens
from vitbench.report.tables import squeeze_table
from vitbench.store import artifacts
from vitbench.store.records import RECORD_FIELDS
from vitbench.store.results import load_results
from vitbench.train.config import TrainConfig
from vitbench.train.finetune import finetune
from vitbench.train.loop import TrainingInterrupted

DEMO = "vitbench_demo_vit"


@pytest.fixture(autouse=True)
def _artifact_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own artifact folder (never ~/.cache)."""
    folder = tmp_path / "artifacts"
    monkeypatch.setenv(artifacts.ENV_DIR, str(folder))
    return folder


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Any:
    """One torch thread: several times faster than two on a CPU shared with other jobs."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def tiny(name: str = DEMO, **kw: Any) -> torch.nn.Module:
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False, **kw).eval()
    with torch.no_grad():  # sharpen attention so selections are not ties
        for blk in model.blocks:
            blk.attn.qkv.weight.mul_(3.0)
    return model


def images(n: int = 3, size: int = 32) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(1))


# -- the squeeze (methods.md section 3.2) -------------------------------------------------------------
def _cos(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b))
    return dot / ((math.hypot(*a) + 1e-6) * (math.hypot(*b) + 1e-6))


def test_squeeze_hand_computed_three_tokens() -> None:
    r1, r2, p = [1.0, 0.0], [0.0, 1.0], [2.0, 1.0]  # cos(p, r1) = 0.894 > cos(p, r2) = 0.447
    out = squeeze(torch.tensor([[r1, r2]]), torch.tensor([[p]]))
    w = math.exp(_cos(p, r1))
    host = [(math.e * r + w * q) / (math.e + w) for r, q in zip(r1, p)]
    torch.testing.assert_close(out, torch.tensor([[host, r2]]), rtol=0, atol=1e-6)
    assert abs(host[0] - 1.47355) < 1e-4 and abs(host[1] - 0.47363) < 1e-4  # worked by hand


def test_squeeze_tie_feeds_both_hosts_and_temperature() -> None:
    r1, r2, p = [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]  # equal cosine to both: both are hosts
    out = squeeze(torch.tensor([[r1, r2]]), torch.tensor([[p]]), temperature=0.5)
    w = math.exp(_cos(p, r1) / 0.5)
    expected = [[(math.e * a + w * b) / (math.e + w) for a, b in zip(r, p)] for r in (r1, r2)]
    torch.testing.assert_close(out, torch.tensor([expected]), rtol=0, atol=1e-6)


def test_training_squeeze_equals_inference_squeeze() -> None:
    x = torch.randn(2, 9, 5, generator=torch.Generator().manual_seed(0))
    keep_idx = [[4, 0, 7], [1, 2, 8]]
    keep = torch.zeros(2, 9, 1)
    for b, idx in enumerate(keep_idx):
        keep[b, idx] = 1.0
    dense = squeeze_dense(x, keep, 1.0 - keep)
    for b, idx in enumerate(keep_idx):
        rest = [i for i in range(9) if i not in idx]
        ref = squeeze(x[b : b + 1, idx], x[b : b + 1, rest])
        torch.testing.assert_close(dense[b : b + 1, idx], ref)
        torch.testing.assert_close(dense[b, rest], x[b, rest])  # pruned tokens pass through


def test_etps_never_uses_cls_as_host(monkeypatch: pytest.MonkeyPatch) -> None:
    cls_tok, t1, t2, t3 = [1.0, 0.0], [1.0, 0.01], [0.0, 1.0], [0.5, 1.0]
    x = torch.tensor([[cls_tok, t1, t2, t3]])
    monkeypatch.setattr(tps_mod, "cls_attention", lambda qkv, attn, p: torch.tensor([[0.1, 0.5, 0.4]]))
    st = ForwardState(
        "etps", 1, "scored", 0, 1, params=tps_mod.ETPSParams(keep_rate=0.6), qkv={0: torch.empty(0)}
    )
    out = tps_mod.etps_reduce(x, st, 0, attn=None)
    # t1 is closest to CLS but CLS is never a host: it goes to t3 (cos 0.456) rather than t2 (0.01)
    w = math.exp(_cos(t1, t3))
    host = [(math.e * a + w * b) / (math.e + w) for a, b in zip(t3, t1)]
    torch.testing.assert_close(out, torch.tensor([[cls_tok, t2, host]]), rtol=0, atol=1e-6)


def test_dtps_decision_never_uses_cls_as_host() -> None:
    x = torch.tensor([[[1.0, 0.0], [1.0, 0.01], [0.0, 1.0], [0.5, 1.0]]])
    keep_logp = torch.tensor([[[-3.0, 0.0], [-0.1, 0.0], [-0.2, 0.0]]])
    st = DynamicState("dtps", 1, "scored", 0, 1, decide={0: 0}, keeps=(2,), squeeze=True)
    out = decide(x, st, 0, lambda img, policy: keep_logp, 0, train=False)
    w = math.exp(_cos([1.0, 0.01], [0.5, 1.0]))
    host = [(math.e * a + w * b) / (math.e + w) for a, b in zip([0.5, 1.0], [1.0, 0.01])]
    torch.testing.assert_close(out, torch.tensor([[[1.0, 0.0], [0.0, 1.0], host]]), rtol=0, atol=1e-6)


def test_etps_random_keeps_exactly_random_tokens_set() -> None:
    x = torch.randn(3, 17, 8, generator=torch.Generator().manual_seed(3))
    ids = torch.tensor([5, 6, 7])

    def state(params: Any) -> ForwardState:
        st = ForwardState("m", 1, "random", 0, 1, params=params)
        st.begin(x)
        st.sample_ids, st._ids = ids, ids
        return st

    plain = reduce_tokens(x, state(EViTParams(keep_rate=0.5, fuse_token=False)), 4, None)
    squeezed = tps_mod.etps_reduce(x, state(tps_mod.ETPSParams(keep_rate=0.5)), 4, None)
    assert plain.shape == squeezed.shape == (3, 9, 8)
    same = (plain == squeezed).all(dim=-1)  # kept tokens that host nothing are untouched
    assert same[:, 0].all() and 0 < int((~same).sum()) <= 3 * 8


# -- DynamicViT: gradients and masking vs dropping ---------------------------------------------------
def test_gumbel_path_reaches_predictor_through_attention_masking() -> None:
    model = tiny("test_vit")
    cls = METHODS.get("dynamicvit")
    with cls.apply(model, cls.params_for(0.5, model, {"artifact": "init"})) as h:
        model.train()
        logits = model(torch.randn(2, 3, 160, 160))
        model.eval()
        decisions = h.state.extra["decisions"]
        assert all(set(d.unique().tolist()) <= {0.0, 1.0} for d in decisions)  # hard in the forward
        torch.nn.functional.cross_entropy(logits, torch.tensor([1, 2])).backward()  # CE only: no ratio loss
        for i, blk in enumerate(model.blocks):
            if hasattr(blk, "vb_part"):
                grad = blk.vb_part.out_conv[4].weight.grad
                assert grad is not None and grad.abs().sum() > 0, f"no gradient reached predictor {i}"


@pytest.mark.parametrize("method", ["dynamicvit", "dtps"])
def test_attention_masking_equals_physical_dropping(method: str) -> None:
    model, x = tiny("test_vit"), images(4, size=160)  # 100 image tokens, decisions after blocks 0, 2, 3
    cls = METHODS.get(method)
    with cls.apply(model, cls.params_for(0.6, model, {"artifact": "init"})) as h, torch.no_grad():
        for blk in model.blocks:  # spread the keep scores so no two tokens tie
            if hasattr(blk, "vb_part"):
                blk.vb_part.out_conv[4].weight.mul_(10.0)
        dropped = model(x)
        assert h.tokens_per_block[-1] == 1 + int(100 * 0.6**3)
        h.state.policy = "topk"  # the inference decision as a dense mask in the training path
        model.train()
        masked = model(x)
        model.eval()
        assert h.tokens_per_block[-1] == 101
    torch.testing.assert_close(masked, dropped, rtol=0, atol=1e-5)


# -- training, artifacts, resume -------------------------------------------------------------------
def _cfg(method: str = "dynamicvit", **kw: Any) -> TrainConfig:
    base = dict(model=DEMO, method=method, weights="random", limit=8, batch_size=4, max_steps=2, lr=1e-2)
    return TrainConfig(**{**base, **kw})


def test_two_step_finetune_changes_predictor_and_artifact_loads(tmp_path: Path) -> None:
    res = finetune(_cfg(), out=tmp_path / "a.safetensors", progress=False, log=lambda _m: None)
    assert res.steps == 2 and set(res.losses) == {"ce", "distill", "ratio", "token", "total"}
    tensors, meta = artifacts.load(res.path)
    assert meta["method"] == "dynamicvit" and meta["sha256"] == res.key
    model = tiny()
    assert meta["model_shape"]["patches"] == model.patch_embed.num_patches and meta["train"]["max_steps"] == 2
    fresh = METHODS.get("dynamicvit").new_part(model.embed_dim, torch.Generator().manual_seed(0)).state_dict()
    assert not torch.allclose(tensors["part.0.out_conv.0.weight"], fresh["out_conv.0.weight"])
    x, cls = images(2), METHODS.get("dynamicvit")
    with cls.apply(model, cls.params_for(0.7, model, {"artifact": "init"})), torch.inference_mode():
        untrained = model(x)
    with (
        cls.apply(model, cls.params_for(0.7, model, {"artifact": str(res.path)})) as h,
        torch.inference_mode(),
    ):
        trained = model(x)
        assert torch.equal(model.blocks[1].vb_part.out_conv[0].weight, tensors["part.0.out_conv.0.weight"])
        assert h.tokens_per_block == cls.schedule(model, cls.params_for(0.7, model, {"artifact": "init"}))
    assert not torch.allclose(trained, untrained)


def test_interrupted_finetune_resumes_to_the_same_artifact(tmp_path: Path) -> None:
    cfg = _cfg("dtps", epochs=2, max_steps=4, checkpoint_every=100)
    quiet = {"progress": False, "log": lambda _m: None}
    ref = finetune(cfg, out=tmp_path / "ref.safetensors", **quiet)
    out, work = tmp_path / "b.safetensors", tmp_path / "work"
    with pytest.raises(TrainingInterrupted, match="after step 2/4"):
        finetune(cfg, out=out, work_dir=work, should_stop=lambda step: step == 2, **quiet)
    assert (work / "last.pt").is_file() and not out.exists()
    with pytest.raises(VitbenchError, match="belongs to another finetune .*lr"):
        finetune(_cfg("dtps", epochs=2, max_steps=4, lr=5e-3), out=out, work_dir=work, **quiet)
    res = finetune(cfg, out=out, work_dir=work, **quiet)
    assert res.resumed_from == 2 and res.steps == 4 and not work.exists()
    a, _ = artifacts.load(ref.path)
    b, _ = artifacts.load(res.path)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_artifact_for_another_model_shape_is_rejected(tmp_path: Path) -> None:
    res = finetune(_cfg(max_steps=1), out=tmp_path / "a.safetensors", progress=False, log=lambda _m: None)
    model = tiny("test_vit")
    cls = METHODS.get("dynamicvit")
    with pytest.raises(VitbenchError, match="another model shape .*patches 64.*patches 100"):
        cls.apply(model, cls.params_for(0.7, model, {"artifact": str(res.path)}))
    assert all(type(b).__name__ == "Block" and not hasattr(b, "vb_part") for b in model.blocks)
    dtps = METHODS.get("dtps")
    with pytest.raises(VitbenchError, match="trained for method 'dynamicvit', not 'dtps'"):
        dtps.apply(tiny(), dtps.params_for(0.7, tiny(), {"artifact": str(res.path)}))


def test_bad_inputs_one_line_errors(tmp_path: Path) -> None:
    model, cls = tiny(), METHODS.get("dynamicvit")
    with pytest.raises(VitbenchError, match=r"int\(64 \* 0.2\^3\) = 0 of 64"):
        cls.params_for(0.2, model)
    with pytest.raises(VitbenchError, match="needs trained parts"):
        cls.apply(model, cls.params_for(0.7, model))
    with pytest.raises(VitbenchError, match="no split 'val'"):
        finetune(_cfg(split="val"), out=tmp_path / "x.safetensors", progress=False)
    with pytest.raises(VitbenchError, match="no training data"):
        _cfg(limit=0)
    with pytest.raises(VitbenchError, match="has no split 'val'.*set train.dataset"):
        suite_from_dict({**SUITE, "train": {"dataset": {"name": "mnist-demo", "split": "val"}}})
    with pytest.raises(VitbenchError, match="unknown training option 'epoch'; did you mean 'epochs'"):
        suite_from_dict({**SUITE, "train": {"epoch": 1}})
    assert main(["finetune", "--method", "evit", "--weights", "random", "--no-progress"]) == 2


# -- CLI and harness ---------------------------------------------------------------------------------
SUITE: dict[str, Any] = {
    "name": "tps-tiny",
    "dataset": {"name": "mnist-demo", "split": "test", "limit": 8},
    "models": [{"name": DEMO, "weights": "random"}],
    "methods": ["dense", "dynamicvit"],
    "keep_ratios": [0.7],
    "batch_size": 8,
    "bootstrap": 10,
    "throughput": False,
}


def test_harness_names_the_finetune_command_then_trains_when_asked(
    tmp_path: Path, _artifact_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, results = tmp_path / "s.yaml", str(tmp_path / "r.sqlite")
    path.write_text(yaml.safe_dump(SUITE))
    assert main(["run", str(path), "--results", results, "--no-progress"]) == 2  # before any cell
    err = capsys.readouterr().err
    assert (
        "vitbench finetune --model vitbench_demo_vit --weights random --method dynamicvit --keep 0.7" in err
    )
    assert not Path(results).exists()  # refused during setup: no store file
    path.write_text(yaml.safe_dump({**SUITE, "train": {"max_steps": 1, "batch_size": 4}}))
    assert main(["run", str(path), "--results", results, "--no-progress"]) == 0
    df = load_results(results)
    row = df.loc[(df["method"] == "dynamicvit") & df["error"].isna()].iloc[0]
    trained = list(_artifact_dir.glob("dynamicvit-vitbench_demo_vit-*.safetensors"))
    assert len(trained) == 1 and json.loads(row["params_json"])["artifact"] == trained[0].name
    tokens = row["tokens_per_block"]
    tokens = json.loads(tokens) if isinstance(tokens, str) else tokens
    assert row["setting"] == "keep_rate=0.7" and tokens[-1] == 1 + int(64 * 0.7**3)


def test_cli_finetune_writes_artifact(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "d.safetensors"
    args = ["finetune", "--method", "dtps", "--weights", "random", "--limit", "4", "--batch-size", "4"]
    assert main([*args, "--max-steps", "1", "--no-save-backbone", "--out", str(out), "--no-progress"]) == 0
    tensors, meta = artifacts.load(out)
    assert not any(k.startswith("backbone.") for k in tensors) and meta["method"] == "dtps"
    assert "1 steps" in capsys.readouterr().out


# -- GMACs vs the closed form (methods.md section 1.2) -------------------------------------------------
def _block(na: int, nm: int, c: int) -> int:
    return 5 * na * c + 4 * na * c * c + 2 * na * na * c + 5 * nm * c + 8 * nm * c * c


def dynvit_closed(c: int, rho: float, squeeze_macs: bool = False) -> float:
    keep = [int(196 * rho ** (k + 1)) for k in range(3)]
    f, n, s = 0, 196, 0
    for i in range(12):
        if i in (3, 6, 9):
            f += 5 * n * c + n * c * c + n * c * (c // 2) + n * (c // 2) * (c // 4) + n * (c // 4) * 2
            f += 2 * (n - keep[s]) * keep[s] * c if squeeze_macs else 0  # similarity + fusion bmm
            n, s = keep[s], s + 1
        f += _block(n + 1, n + 1, c)
    return (f + 196 * c * 768 + 5 * (n + 1) * c + 1000 * c) / 1e9


def evit_nofuse_closed(c: int, rho: float, squeeze_macs: bool = False) -> float:
    f, n = 0, 196
    for i in range(12):
        if i in (3, 6, 9):
            left = math.ceil(rho * n)
            f += _block(n + 1, left + 1, c) + (2 * (n - left) * left * c if squeeze_macs else 0)
            n = left
        else:
            f += _block(n + 1, n + 1, c)
    return (f + 196 * c * 768 + 5 * (n + 1) * c + 1000 * c) / 1e9


@pytest.mark.parametrize(
    ("method", "rho", "closed", "published"),
    [
        ("dynamicvit", 0.9, lambda: dynvit_closed(384, 0.9), 4.0),
        ("dynamicvit", 0.8, lambda: dynvit_closed(384, 0.8), 3.4),
        ("dynamicvit", 0.7, lambda: dynvit_closed(384, 0.7), 2.9),
        ("dtps", 0.7, lambda: dynvit_closed(384, 0.7, squeeze_macs=True), 3.0),
        ("etps", 0.7, lambda: evit_nofuse_closed(384, 0.7, squeeze_macs=True), 3.0),
    ],
)
def test_gmacs_deit_s_closed_form(method: str, rho: float, closed: Any, published: float) -> None:
    from vitbench.report.paper import paper_round

    model = timm.create_model("deit_small_patch16_224", pretrained=False)
    cls = METHODS.get(method)
    params = cls.params_for(rho, model, {"artifact": "init"} if cls.trainable else None)
    with cls.apply(model, params):
        g = count_gmacs(model)
    tol = 2e-6 if method != "etps" else 0.0004  # eTPS adds EViT's CLS-row q.K^T beside fused attention
    assert abs(g - closed()) < tol
    assert paper_round(g, "truncate" if method == "dynamicvit" else "round") == published
    if method == "dynamicvit":  # methods.md section 1.2 table (predictor included)
        assert round(g, 3) == {0.9: 4.05, 0.8: 3.471, 0.7: 2.988}[rho]


# -- report --------------------------------------------------------------------------------------------
def test_squeeze_table_pairs_methods_at_equal_keep_and_selection() -> None:
    def rec(method: str, keep: float, sel: str, top1: float, setting: str = "") -> dict[str, Any]:
        r: dict[str, Any] = dict.fromkeys(RECORD_FIELDS)
        r.update(model="m", dataset="d", noise="clean", level=0.0, seed=0, params_m=1.0, img_per_s=1.0)
        r.update(method=method, keep_ratio=keep, selection=sel, top1=top1, gmacs=keep)
        r.update(setting=setting or f"keep_rate={keep:g}", cell_key=f"{method}{keep}{sel}{setting}")
        return r

    rows = [
        rec("dense", 1.0, "scored", 98.0),
        rec("etps", 0.5, "random", 90.0),
        rec("random-tokens", 0.5, "random", 85.0),
        rec("evit", 0.5, "random", 87.0, "keep_rate=0.5, fuse_token=False"),
        rec("dtps", 0.5, "scored", 95.0),
        rec("dynamicvit", 0.5, "scored", 94.0),
    ]
    text = squeeze_table(pd.DataFrame(rows), fmt="csv")
    lines = text.splitlines()
    assert lines[0].startswith("Keep,Selection,Squeeze,Top-1 (squeeze),Pruning only,Top-1 (prune),Δ")
    assert "0.5,scored,dtps,95.0,dynamicvit,94.0,1.0" in text
    assert "0.5,random,etps,90.0,evit (fuse_token=False),87.0,3.0" in text
    assert "0.5,random,etps,90.0,random-tokens,85.0,5.0" in text
    with pytest.raises(VitbenchError, match="no squeeze/pruning pair"):
        squeeze_table(pd.DataFrame(rows[:2]))
