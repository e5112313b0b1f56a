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


def bench_train(method: str = "dynamicvit", batch_size: int = 64, steps: int = 20) -> dict[str, float]:
    """Training img/s of ``vitbench finetune`` vs a bare PyTorch loop of the same model and batch.

    Both run ``steps`` optimiser steps of the same computation (patched demo model in training
    mode, frozen dense teacher, the method's losses, AdamW) on the mnist-demo train split. The
    bare loop has the data already normalised in memory and no accelerate, progress bar,
    checkpointing or per-step seeding. Prints both and their ratio; returns them.
    """
    import copy
    import tempfile
    from pathlib import Path

    from vitbench.demo import ARCH, default_weights_path
    from vitbench.harness import to_tensor
    from vitbench.methods.base import token_method
    from vitbench.models import create_model, data_config
    from vitbench.data import load_dataset
    from vitbench.train import TrainConfig, finetune, loss_weights, param_groups, training_losses, Student

    weights = "demo" if default_weights_path().is_file() else "random"
    cfg = TrainConfig(
        model=ARCH, method=method, weights=weights, batch_size=batch_size, max_steps=steps, checkpoint_every=10**6
    )
    with tempfile.TemporaryDirectory() as tmp:
        res = finetune(cfg, out=Path(tmp) / "a.safetensors", progress=False, log=lambda _m: None)
    ft_ips = res.img_per_s

    cls = token_method(method)
    model = create_model(ARCH, weights)
    teacher = copy.deepcopy(model).eval().requires_grad_(False)
    params = cls.params_for(cfg.keep_ratio, model, {"artifact": "init"})
    data = load_dataset(DEMO_DATASET, split="train")
    x_all = to_tensor(data.images, data_config(model))
    y_all = torch.from_numpy(data.labels.copy())
    with cls.apply(model, params) as handle:
        opt = torch.optim.AdamW(param_groups(model, cfg, cls))
        student, weights_ = Student(model), loss_weights(cfg, cls)
        model.train()
        t0 = time.perf_counter()
        for step in range(steps):
            i = (step * batch_size) % max(len(y_all) - batch_size, 1)
            loss, _ = training_losses(
                cls, handle, student, teacher, x_all[i : i + batch_size], y_all[i : i + batch_size], weights_
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        bare_s = time.perf_counter() - t0
        model.eval()
    bare_ips = steps * batch_size / bare_s
    print(f"{method} on the demo model ({weights} weights), batch {batch_size}, {steps} steps, "
          f"{torch.get_num_threads()} threads")
    print(f"vitbench finetune: {ft_ips:.1f} img/s")
    print(f"bare PyTorch loop: {bare_ips:.1f} img/s")
    print(f"ratio:             {ft_ips / bare_ips:.3f}  (target >= 0.8)")
    return {"finetune_img_per_s": ft_ips, "bare_img_per_s": bare_ips}
