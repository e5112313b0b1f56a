"""Pruned models vs the latency lookup table: achieved GMACs, predicted vs measured ms, speedup.

``vitbench bench-channel [--model M] [--weights W] [--batch B] [--rounds R]`` reads
every pruned (not fine-tuned; same structure) artifact of ``M``/``W`` in the artifact folder,
measures each model and the dense one in interleaved rounds (minimum over repeats per round,
median over rounds, so load drifts hit every model alike) and prints a Markdown table: requested
and achieved GMACs fraction, LUT-predicted and measured ms per batch, the prediction error, the
measured speedup over dense, the GMACs ratio and their quotient (realized/ideal).
"""

from __future__ import annotations

import json
import statistics
from typing import Any

from torch import nn

from vitbench.core.errors import VitbenchError
from vitbench.core.models import create_model, data_config
from vitbench.harness.pruned import load_pruned
from vitbench.measure.gmacs import count_gmacs
from vitbench.methods.slimming import latency as lat
from vitbench.methods.slimming.slim import model_dims
from vitbench.store import artifacts


def pruned_artifacts(model: str, weights: str) -> list[tuple[str, dict[str, Any], Any]]:
    """(method, params, path) of the pruned, not fine-tuned artifacts of ``model``/``weights``."""
    from safetensors import safe_open

    wid = artifacts.weights_id(weights)
    out = []
    for path in sorted(artifacts.user_dir().glob("*.safetensors")):
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get("vitbench", "{}"))
        key = meta.get("key") or {}
        if meta.get("kind") != "pruned" or "finetune" in meta:
            continue
        if key.get("model") != model or key.get("weights") != wid:
            continue
        out.append((meta["method"], json.loads(key["params"]), path))
    return out


def latency_table(
    model: str = "vitbench_demo_vit", weights: str = "demo", batch: int = 32, rounds: int = 5
) -> str:
    """The Markdown table described in the module docstring."""
    import torch
    from tabulate import tabulate

    if rounds < 1:
        raise VitbenchError(f"bench-channel: rounds {rounds} must be >= 1")
    dense = create_model(model, weights).eval()
    size = tuple(data_config(dense)["input_size"])
    table, path, new = lat.get_table(dense, batch=batch)
    models: list[tuple[str, dict[str, Any], nn.Module]] = [("dense", {}, dense)]
    models += [(m, p, load_pruned(f, dense)) for m, p, f in pruned_artifacts(model, weights)]
    times: list[list[float]] = [[] for _ in models]
    for _ in range(rounds):
        for i, (_, _, m) in enumerate(models):
            times[i].append(lat.measure_model_ms(m, batch=batch, repeats=7))
    ms = [statistics.median(t) for t in times]
    g = [count_gmacs(m, size) for _, _, m in models]  # type: ignore[arg-type]
    pred = [table.predict(model_dims(m)) for _, _, m in models]
    rows = []
    for i, (name, params, _) in enumerate(models):
        knobs = {k: v for k, v in params.items() if k in ("saliency", "latency_weight", "target", "seed")}
        setting = ", ".join(f"{k}={v}" for k, v in knobs.items()) or "-"
        rows.append(
            [
                name,
                setting,
                f"{params.get('keep', 1.0):.2f}",
                f"{g[i] / g[0]:.4f}",
                f"{pred[i]:.2f}",
                f"{ms[i]:.2f}",
                f"{(ms[i] - pred[i]) / pred[i]:+.1%}",
                f"{(pred[0] / pred[i]) / (ms[0] / ms[i]) - 1:+.1%}",
                f"{ms[0] / ms[i]:.2f}",
                f"{g[0] / g[i]:.2f}",
                f"{(ms[0] / ms[i]) / (g[0] / g[i]):.2f}",
            ]
        )
    head = (
        f"{model} ({weights}), batch {batch}, {lat.device_id()}, LUT {path.name}"
        f"{' (measured now)' if new else ''}, {rounds} interleaved rounds, torch {torch.__version__}"
    )
    cols = [
        "method",
        "setting",
        "keep (GMACs)",
        "achieved",
        "LUT ms",
        "measured ms",
        "LUT error",
        "LUT speedup error",
        "speedup",
        "GMACs ratio",
        "realized/ideal",
    ]
    return head + "\n\n" + tabulate(rows, headers=cols, tablefmt="github")
