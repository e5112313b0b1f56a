"""NViT and the channel baselines: saliency vs brute force, identity, ranking, LUT cache, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from torch import nn

from vbtest import TINY_MODELS, make_model, model_input
from vitbench.core.errors import VitbenchError
from vitbench.measure.gmacs import count_macs
from vitbench.methods import METHODS
from vitbench.methods.nvit import NORMALISE, saliency
from vitbench.methods.slimming import latency as lat
from vitbench.methods.slimming.channel import group_sizes, macs_function, select
from vitbench.methods.slimming.slim import SlimPlan, model_dims, slim_model

MINE = ["nvit", "random-channels", "magnitude"]


def _tiny(depth: int = 2) -> nn.Module:
    """8-wide, 2 heads of 4, MLP 16, 4 patches: small enough for finite differences."""
    torch.manual_seed(0)
    model = timm.models.vision_transformer.VisionTransformer(
        img_size=16, patch_size=8, embed_dim=8, depth=depth, num_heads=2, mlp_ratio=2.0, num_classes=3,
        qkv_bias=True,
    )  # fmt: skip
    return model.double().eval()


def _batches(model: nn.Module, n: int = 2, b: int = 3) -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(1)
    h, w = model.patch_embed.img_size
    dtype = next(model.parameters()).dtype
    return [
        (torch.randn(b, 3, h, w, generator=gen).to(dtype), torch.randint(0, 3, (b,), generator=gen))
        for _ in range(n)
    ]


def _unit_slices(model: nn.Module, kind: str, block: int, u: int) -> list[tuple[torch.Tensor, tuple]]:
    """(parameter, index) pairs of a unit's scored slices, written out independently of channel.py."""
    if kind == "embed":
        out = [(model.patch_embed.proj.weight, (u,)), (model.patch_embed.proj.bias, (u,))]
        for blk in model.blocks:
            out += [(blk.attn.qkv.weight, (slice(None), u)), (blk.attn.proj.weight, (u,))]
            out += [(blk.attn.proj.bias, (u,)), (blk.mlp.fc1.weight, (slice(None), u))]
            out += [(blk.mlp.fc2.weight, (u,)), (blk.mlp.fc2.bias, (u,))]
        return out
    attn = model.blocks[block].attn
    h, dq, dv = attn.num_heads, attn.qk_dim, attn.v_dim
    if kind == "head":
        rows = [*range(u * dq, (u + 1) * dq), *range(h * dq + u * dq, h * dq + (u + 1) * dq)]
        rows += list(range(2 * h * dq + u * dv, 2 * h * dq + (u + 1) * dv))
    elif kind == "qk":
        rows = [hd * dq + u for hd in range(h)]
    elif kind == "v":
        rows = [2 * h * dq + hd * dv + u for hd in range(h)]
    else:
        fc1 = model.blocks[block].mlp.fc1
        return [(fc1.weight, (u,)), (fc1.bias, (u,))]
    return [(attn.qkv.weight, (rows,)), (attn.qkv.bias, (rows,))]


def _loss(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> float:
    with torch.no_grad():
        return float(torch.nn.functional.cross_entropy(model(batch[0]), batch[1]))


def test_hessian_saliency_equals_brute_force() -> None:
    """(sum theta*dL/dtheta / k)^2 per unit == (d/d alpha L(alpha * theta_u) at 1 / k)^2, averaged."""
    model = slim_model(_tiny(), SlimPlan.identity(_tiny()))
    batches = _batches(model)
    hess = saliency(model, batches, "hessian")
    taylor = saliency(model, batches, "taylor")
    eps = 1e-6
    checked = 0
    for (kind, block), scores in hess.items():
        for u in range(len(scores)):
            fd = []
            for batch in batches:
                vals = []
                for sign in (1, -1):
                    slices = _unit_slices(model, kind, block, u)
                    saved = [p.data[i].clone() for p, i in slices]
                    for p, i in slices:
                        p.data[i] *= 1 + sign * eps
                    vals.append(_loss(model, batch))
                    for (p, i), s in zip(slices, saved):
                        p.data[i] = s
                fd.append((vals[0] - vals[1]) / (2 * eps))
            expect = np.mean([(f / NORMALISE[kind]) ** 2 for f in fd])
            assert scores[u] == pytest.approx(expect, rel=1e-5, abs=1e-12), (kind, block, u)
            assert taylor[(kind, block)][u] == pytest.approx(abs(np.mean(fd)), rel=1e-5, abs=1e-9)
            checked += 1
    assert checked == 8 + 2 * (2 + 4 + 4 + 16)


@pytest.mark.parametrize("method", MINE)
@pytest.mark.parametrize("key", ["vit", "distilled", "layerscale"])
def test_keep_one_is_identity(method: str, key: str) -> None:
    model = make_model(key)
    cls = METHODS.get(method)
    x = model_input(model)
    pruned = cls.prune(model, cls.params_for(1.0, model), _batches_like(model))
    with torch.inference_mode():
        torch.testing.assert_close(pruned(x), model(x), rtol=0, atol=1e-5)


def _batches_like(model: nn.Module, n: int = 2) -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(2)
    return [
        (model_input(model, 4, seed=i), torch.randint(0, model.num_classes, (4,), generator=gen))
        for i in range(n)
    ]


TARGET_CASES = [("nvit", k) for k in sorted(TINY_MODELS)] + [
    (m, k) for m in ("random-channels", "magnitude") for k in ("vit", "distilled")
]


@pytest.mark.parametrize(("method", "key"), TARGET_CASES)
def test_gmacs_target_within_two_percent_on_rebuilt_model(method: str, key: str) -> None:
    model = make_model(key)
    cls = METHODS.get(method)
    over = {"latency_weight": 0.0, "steps": 2} if method == "nvit" else {}
    pruned = cls.prune(model, cls.params_for(0.6, model, over), _batches_like(model))
    x = model_input(model, batch=1)
    ratio = count_macs(pruned, x) / count_macs(model, x)
    assert abs(ratio - 0.6) <= 0.02 * 0.6, ratio
    with torch.inference_mode():
        assert torch.isfinite(pruned(model_input(model))).all()


def _fake_scores(model: nn.Module, low: dict[tuple[str, int], list[int]]) -> dict:
    """Score 10 for every unit, 0.1*(rank) for the ``low`` units (lowest first)."""
    dims = model_dims(model)
    sizes = {("embed", -1): dims.embed}
    for b, (h, q, v, m) in enumerate(dims.blocks):
        sizes.update({("head", b): h, ("qk", b): q, ("v", b): v, ("mlp", b): m})
    out = {k: np.full(n, 10.0) for k, n in sizes.items()}
    for layer, units in low.items():
        for r, u in enumerate(units):
            out[layer][u] = 0.1 * (r + 1)
    return out


def test_slicing_keeps_exactly_the_ranked_units_and_ranking_crosses_blocks() -> None:
    model = slim_model(make_model("vit"), SlimPlan.identity(make_model("vit")))
    groups = group_sizes(model_dims(model))
    assert groups == {"embed": 1, "head": 1, "qk": 4, "v": 4, "mlp": 1}  # NViT's fractions of 64/2/32/192
    low = {("mlp", 4): [7, 3, 150], ("v", 1): [5, 9, 13, 17], ("embed", -1): [60]}
    scores = _fake_scores(model, low)
    macs = macs_function(model)
    dims0 = model_dims(model)
    # stop once the MACs of removing exactly these 5 groups are reached
    target = macs(dims0)
    for layer, n in ((("mlp", 4), 3), (("v", 1), 4), (("embed", -1), 1)):
        from vitbench.methods.slimming.channel import _remove

        dims0 = _remove(dims0, layer, n)
    plan, dims = select(model, scores, groups, macs(dims0), 0.0, macs)
    assert macs(dims) == macs(dims0) < target
    assert set(range(192)) - set(plan.blocks[4].mlp) == {7, 3, 150}
    assert set(range(32)) - set(plan.blocks[1].v[0]) == {5, 9, 13, 17}
    assert plan.blocks[1].v[0] == plan.blocks[1].v[1]  # v index shared by every head
    assert set(range(64)) - set(plan.embed) == {60}
    for b, bp in enumerate(plan.blocks):  # nothing else touched
        assert len(bp.heads) == 2 and len(bp.qk[0]) == 32
        assert len(bp.mlp) == (189 if b == 4 else 192)


def test_never_removes_a_layers_last_group() -> None:
    model = slim_model(make_model("vit"), SlimPlan.identity(make_model("vit")))
    dims = model_dims(model)
    scores = _fake_scores(model, {("head", 0): [0, 1]})  # both heads of block 0 rank lowest
    plan, _ = select(model, scores, group_sizes(dims), 0.0, 0.0, macs_function(model))
    assert all(len(bp.heads) >= 1 and len(bp.mlp) >= 1 and len(bp.qk[0]) >= 1 for bp in plan.blocks)
    assert len(plan.embed) >= 1


def test_target_below_smallest_legal_model_is_one_line_error() -> None:
    model = make_model("vit")
    cls = METHODS.get("magnitude")
    with pytest.raises(VitbenchError, match="smallest legal model") as err:
        cls.prune(model, cls.params_for(0.01, model), None)
    assert "\n" not in str(err.value)


def test_bad_params_are_one_line_errors() -> None:
    model = make_model("vit")
    nvit = METHODS.get("nvit")
    for over in ({"saliency": "obd"}, {"target": "flops"}, {"steps": 0}, {"momentum": 1.5}):
        with pytest.raises(VitbenchError) as err:
            nvit.params_for(0.5, model, over)
        assert "\n" not in str(err.value)


def test_latency_table_cached_reused_and_device_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VITBENCH_CACHE", str(tmp_path))
    model = _tiny(depth=2).float()
    calls = []
    real = lat.measure_table

    def counting(*a, **k):
        calls.append(1)
        return real(
            *a, repeats=1, warmup=0, **{kk: v for kk, v in k.items() if kk not in ("repeats", "warmup")}
        )

    monkeypatch.setattr(lat, "measure_table", counting)
    t1, f1, new1 = lat.get_table(model, batch=2)
    t2, f2, new2 = lat.get_table(model, batch=2)
    assert (new1, new2) == (True, False) and f1 == f2 and len(calls) == 1
    assert f1.parent == tmp_path / "latency" and f1.is_file()
    assert np.array_equal(t1.block_ms, t2.block_ms) and t1.axes == lat.grid(model_dims(model))
    assert t1.block(*[a[-1] for a in t1.axes]) == pytest.approx(t1.block_ms[-1, -1, -1, -1, -1])
    # a table file from another device is refused, also when given explicitly
    raw = json.loads(f1.read_text())
    raw["device"] = "cuda:Some Other GPU"
    other = tmp_path / "other.json"
    other.write_text(json.dumps(raw))
    with pytest.raises(VitbenchError, match="measured on 'cuda:Some Other GPU'") as err:
        lat.get_table(model, batch=2, path=str(other))
    assert "\n" not in str(err.value)
    f1.write_text(json.dumps(raw))
    with pytest.raises(VitbenchError, match="latencies do not transfer"):
        lat.get_table(model, batch=2)


def _synthetic_table(model: nn.Module, batch: int) -> lat.LatencyTable:
    """A LUT whose block latency is a known smooth function of the dims (no timing noise)."""
    axes = lat.grid(model_dims(model))
    e, h, q, v, m = np.meshgrid(*[np.asarray(a, dtype=float) for a in axes], indexing="ij")
    block = 1e-3 * (e * h * (2 * q + 2 * v) + 2 * e * m) + 0.01
    tail = 1e-3 * np.asarray(axes[0], dtype=float) + 0.01
    return lat.LatencyTable(lat.device_id(), lat.geometry(model), batch, axes, block, tail)


def test_latency_target_and_penalty(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VITBENCH_CACHE", str(tmp_path))
    model = make_model("vit")
    monkeypatch.setattr(lat, "measure_table", lambda m, batch, device: _synthetic_table(m, batch))
    nvit = METHODS.get("nvit")
    batches = _batches_like(model)
    params = nvit.params_for(0.6, model, {"target": "latency", "latency_batch": 2, "steps": 2})
    pruned = nvit.prune(model, params, batches)
    table, _, _ = lat.get_table(model, batch=2)
    ratio = table.predict(model_dims(pruned)) / table.predict(model_dims(model))
    assert 0.6 * 0.98 <= ratio <= 0.6 * 1.02
    # the penalty subtracts beta * dLat / mean(dLat) from the normalised saliency
    from vitbench.methods.nvit import latency_deltas, latency_penalised

    slim = slim_model(model, SlimPlan.identity(model))
    dims, groups = model_dims(slim), group_sizes(model_dims(slim))
    raw = saliency(slim, batches, "hessian")
    pen = latency_penalised(raw, dims, table, 0.5, groups)
    deltas = latency_deltas(dims, table, groups)
    assert deltas[("mlp", 0)] == pytest.approx(1e-3 * 2 * 64, rel=1e-6)  # d block / d m = 2e-3 * e
    layer = ("mlp", 3)
    diff = raw[layer] / np.mean(np.concatenate(list(raw.values()))) - pen[layer]
    assert np.allclose(diff, diff[0]) and diff[0] > 0


def test_throughput_command_times_pruned_channel_models(capsys: pytest.CaptureFixture[str]) -> None:
    from vitbench.cli.main import main

    args = ["throughput", "--model", "test_vit", "--rounds", "1", "--repeats", "1", "--warmup", "0"]
    args += ["--method", "magnitude", "--method", "random-channels", "--keep", "0.5", "--batch-size", "2"]
    assert main(args) == 0
    rows = [ln.split("|")[1:-1] for ln in capsys.readouterr().out.splitlines() if ln.startswith("| ")]
    cells = {r[0].strip(): [c.strip() for c in r] for r in rows if "method" not in r[0]}
    assert set(cells) == {"dense", "magnitude", "random-channels"}
    for name in ("magnitude", "random-channels"):
        assert float(cells[name][7]) == pytest.approx(2.0, rel=0.02)  # GMACs ratio of keep 0.5
