"""Benchmark commands that print figures (speed targets are checked here, not in timed tests)."""

from __future__ import annotations

import time

import torch

from vitbench.demo import DEMO_DATASET


def bench_eval(batch_size: int = 250, repeats: int = 3) -> dict[str, float]:
    """Evaluation img/s through the harness vs bare forward img/s of the same model.

    The harness pass includes the data pipeline, normalisation, gathering and sample-id keying;
    the bare pass runs the model on the same batches already normalised in memory.

    Prints both and their ratio; returns them.
    """
    from vitbench.config import expand, suite_from_dict
    from vitbench.harness import Harness, to_tensor
    from vitbench.methods.base import token_method
    from vitbench.models import data_config

    suite = suite_from_dict(
        {
            "name": "bench-eval",
            "models": [{"name": "vitbench_demo_vit", "weights": "demo"}],
            "methods": ["dense"],
            "dataset": {"name": DEMO_DATASET, "split": "test"},
            "batch_size": batch_size,
            "throughput": False,
        }
    )
    cell = expand(suite)[0]
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        h = Harness(suite, f"{tmp}/bench.sqlite", progress=False)
        model = h.model(cell.model)
        cfg = data_config(model)
        images = h.images(cell, cfg)
        n = len(images)
        x_all = to_tensor(images, cfg)
        dense = token_method("dense")
        params = dense.params_for(1.0, model)

        def harness_pass() -> None:
            with dense.apply(model, params) as handle:
                h.evaluate(model, handle, images, cfg)

        def bare_pass() -> None:
            with torch.inference_mode():
                for i in range(0, n, batch_size):
                    model(x_all[i : i + batch_size])

        harness_pass()  # warm-up
        bare_pass()
        t_h, t_b = [], []
        for _ in range(repeats):
            t0 = time.perf_counter()
            harness_pass()
            t_h.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            bare_pass()
            t_b.append(time.perf_counter() - t0)
    eval_ips = n / sorted(t_h)[len(t_h) // 2]
    bare_ips = n / sorted(t_b)[len(t_b) // 2]
    print(f"demo model, {n} images, batch {batch_size}, {torch.get_num_threads()} threads")
    print(f"harness evaluation: {eval_ips:.1f} img/s")
    print(f"bare forward:       {bare_ips:.1f} img/s")
    print(f"ratio:              {eval_ips / bare_ips:.3f}  (target >= 0.9)")
    return {"eval_img_per_s": eval_ips, "bare_img_per_s": bare_ips}
