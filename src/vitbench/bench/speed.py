"""Benchmark commands that print figures (speed targets are checked here, not in timed tests)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vitbench.core.demo import ARCH, DEMO_DATASET, default_weights_path
from vitbench.core.method_index import adaptive_methods
from vitbench.core.models import create_model, data_config, freeze_args
from vitbench.core.models import data_config as resolve_data_config
from vitbench.core.specs import ModelSpec
from vitbench.core.threads import thread_count
from vitbench.data import default_workers, load_dataset
from vitbench.data.samples import to_tensor
from vitbench.harness.runner import Harness
from vitbench.harness.suites import expand, suite_from_dict
from vitbench.harness.trained import cost_params
from vitbench.measure import count_gmacs, measure_throughput
from vitbench.measure.throughput import time_passes
from vitbench.methods import METHODS
from vitbench.methods.base import ChannelMethod, token_method
from vitbench.report.format import gmacs_digits
from vitbench.train.config import TrainConfig
from vitbench.train.finetune import finetune
from vitbench.train.steps import Student, loss_weights, param_groups, training_losses


def bench_eval(batch_size: int = 250, repeats: int = 3) -> dict[str, float]:
    """Evaluation img/s through the harness vs bare forward img/s of the same model.

    The harness pass includes the data pipeline, normalisation, gathering and sample-id keying;
    the bare pass runs the model on the same batches already normalised in memory.

    Prints both and their ratio; returns them.
    """
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

        # one warm-up of each, then `repeats` interleaved timed rounds
        t_h, t_b = time_passes([harness_pass, bare_pass], repeats, warmup=1)
    eval_ips = n / sorted(t_h)[len(t_h) // 2]
    bare_ips = n / sorted(t_b)[len(t_b) // 2]
    print(f"demo model, {n} images, batch {batch_size}, {thread_count(torch.get_num_threads())}")
    print(f"harness evaluation: {eval_ips:.1f} img/s")
    print(f"bare forward:       {bare_ips:.1f} img/s")
    print(f"ratio:              {eval_ips / bare_ips:.3f}  (target >= 0.9)")
    return {"eval_img_per_s": eval_ips, "bare_img_per_s": bare_ips}


def make_jpeg_folder(root: Path, n: int, size: tuple[int, int] = (500, 375), classes: int = 10) -> Path:
    """Write ``n`` ImageNet-like JPEGs (``size`` px, quality 90, smooth content) as an ImageFolder."""
    from PIL import Image

    rng = np.random.default_rng(0)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    for i in range(n):
        folder = root / f"c{i % classes:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        fx, fy, ph = rng.uniform(0.005, 0.05, 3) * np.array([1, 1, 600])
        wave = np.sin(fx * xx + ph)[..., None] * np.cos(fy * yy)[..., None]
        base = 127 + 80 * wave * rng.uniform(0.3, 1, 3)
        img = np.clip(base + rng.normal(0, 12, (h, w, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(folder / f"img_{i:06d}.JPEG", quality=90)
    return root


def bench_data(
    folder: str | None = None,
    model_name: str = "deit_small_patch16_224",
    batch_size: int = 64,
    limit: int | None = 256,
    repeats: int = 2,
    device: str | None = None,
) -> dict[str, float]:
    """Evaluation img/s on a folder of JPEGs (decode + timm transform in DataLoader workers) vs bare forward.

    The evaluation pass is the harness's (``Harness.evaluate`` on the ``image-folder`` dataset:
    decoding, resize/crop, batching, normalisation, gathering) with the default number of
    workers; the bare pass runs the same model on the same images already decoded, normalised
    and on the device, in the same batches. Random weights (speed does not depend on them).
    Passes are interleaved, after one warm-up of each; medians are reported. Without ``folder``
    a temporary folder of generated 500x375 JPEGs is used. Prints both and their ratio.
    """
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(folder) if folder else make_jpeg_folder(Path(tmp) / "jpegs", limit or 256)
        suite = suite_from_dict(
            {
                "name": "bench-data",
                "models": [{"name": model_name, "weights": "random"}],
                "methods": ["dense"],
                "dataset": {"name": "image-folder", "split": "val", "root": str(root), "limit": limit},
                "batch_size": batch_size,
                "throughput": False,
            }
        )
        from accelerate import Accelerator

        acc = Accelerator(cpu=device == "cpu" or not torch.cuda.is_available())
        h = Harness(suite, f"{tmp}/bench.sqlite", accelerator=acc, progress=False, cache=False)
        cell = expand(suite)[0]
        model = h.model(cell.model)
        cfg = data_config(model)
        samples = h.images(cell, cfg)
        n = len(samples)  # type: ignore[arg-type]
        decoded = np.stack([samples[i][0].numpy() for i in range(n)])  # type: ignore[index]
        starts = range(0, n, batch_size)
        batches = [to_tensor(decoded[i : i + batch_size], cfg).to(acc.device) for i in starts]
        dense = token_method("dense")
        params = dense.params_for(1.0, model)

        def eval_pass() -> None:
            with dense.apply(model, params) as handle:
                h.evaluate(model, handle, h.images(cell, cfg), cfg)

        def bare_pass() -> None:
            with torch.inference_mode():
                for x in batches:
                    model(x).float().cpu()

        # one warm-up of each, then `repeats` interleaved rounds, synchronised on CUDA
        t_e, t_b = time_passes([eval_pass, bare_pass], repeats, warmup=1, device=acc.device)
    eval_ips = n / sorted(t_e)[len(t_e) // 2]
    bare_ips = n / sorted(t_b)[len(t_b) // 2]
    where = folder or "generated 500x375 JPEGs (quality 90)"
    print(
        f"{model_name} (random weights) on {n} images from {where}, batch {batch_size}, "
        f"{acc.device}, {thread_count(torch.get_num_threads())}, {default_workers()} DataLoader workers"
    )
    print(f"evaluation (decode + transform + forward): {eval_ips:.1f} img/s")
    print(f"bare forward (images in memory):           {bare_ips:.1f} img/s")
    print(f"ratio:                                      {eval_ips / bare_ips:.3f}  (target >= 0.9)")
    return {"eval_img_per_s": eval_ips, "bare_img_per_s": bare_ips}


def bench_train(
    method: str = "dynamicvit",
    batch_size: int = 64,
    steps: int = 20,
    threads: int | None = None,
    rounds: int = 3,
) -> dict[str, float]:
    """Training img/s of ``vitbench finetune`` vs a bare PyTorch loop of the same model and batch.

    Both run ``steps`` optimiser steps of the same computation (patched demo model in training
    mode, frozen dense teacher, the method's losses, AdamW) on the mnist-demo train split; each
    is timed over its step loop only, in ``rounds`` interleaved rounds (median reported, so
    load from other jobs hits both alike). The bare loop has the data already normalised in
    memory and no accelerate, progress bar, checkpointing or per-step seeding. Prints both and
    their ratio; returns them.
    """
    import tempfile
    from pathlib import Path

    weights = "demo" if default_weights_path().is_file() else "random"
    cfg = TrainConfig(
        model=ARCH, method=method, weights=weights, batch_size=batch_size, max_steps=steps, epochs=10**6
    )
    old = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    bare, tuned = [], []
    try:
        for _ in range(rounds):
            bare.append(_bare_train_ips(cfg, steps))
            with tempfile.TemporaryDirectory() as tmp:
                res = finetune(cfg, out=Path(tmp) / "a.safetensors", progress=False, log=lambda _m: None)
            tuned.append(res.img_per_s)
    finally:
        torch.set_num_threads(old)
    bare_ips, ft_ips = sorted(bare)[len(bare) // 2], sorted(tuned)[len(tuned) // 2]
    print(
        f"{method} on the demo model ({weights} weights), batch {batch_size}, {steps} steps x "
        f"{rounds} interleaved rounds (median), {thread_count(threads or old)}"
    )
    print(f"vitbench finetune: {ft_ips:.1f} img/s   (rounds: {', '.join(f'{v:.0f}' for v in tuned)})")
    print(f"bare PyTorch loop: {bare_ips:.1f} img/s   (rounds: {', '.join(f'{v:.0f}' for v in bare)})")
    print(f"ratio:             {ft_ips / bare_ips:.3f}  (target >= 0.8)")
    return {"finetune_img_per_s": ft_ips, "bare_img_per_s": bare_ips}


def _bare_train_ips(cfg: Any, steps: int) -> float:
    """img/s of a plain loop: same patched model, teacher, losses and AdamW groups as finetune."""
    import copy

    cls: Any = token_method(cfg.method)
    model = create_model(cfg.model, cfg.weights)
    teacher = copy.deepcopy(model).eval().requires_grad_(False)
    data = load_dataset(DEMO_DATASET, split="train")
    x_all = to_tensor(data.images, data_config(model))
    y_all = torch.from_numpy(data.labels.copy())
    b = cfg.batch_size
    with cls.apply(model, cls.params_for(cfg.keep_ratio, model, {"artifact": "init"})) as handle:
        opt = torch.optim.AdamW(param_groups(model, cfg, cls))
        student, weights = Student(model), loss_weights(cfg, cls)
        model.train()
        t0 = time.perf_counter()
        for step in range(steps):
            i = (step * b) % max(len(y_all) - b, 1)
            loss, _ = training_losses(
                cls, handle, student, teacher, x_all[i : i + b], y_all[i : i + b], weights
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        wall = time.perf_counter() - t0
        model.eval()
    return steps * b / wall


def throughput_table(
    model_name: str,
    methods: list[str],
    keeps: list[float],
    batch_sizes: list[int],
    dtype: torch.dtype | list[torch.dtype],
    device: str,
    selection: str,
    sets: dict,
    warmup: int,
    repeats: int,
    rounds: int,
    channels_last: bool = False,
    compile: bool = False,
    model_args: dict[str, Any] | None = None,
    data_config: dict[str, Any] | None = None,
    progress: bool = False,
    weights: str = "random",
) -> str:
    """Markdown table of img/s (median round and min–max over rounds), GMACs and measured speedup vs dense.

    ``model_args``/``data_config`` are passed to :func:`vitbench.core.models.create_model` (own
    architectures; the input size comes from the resulting data config).

    One block per (dtype, batch size). Configurations are measured in interleaved rounds
    (dense, method 1, method 2, ..., dense, ...) and each reports its median round, so slow
    drifts of a shared machine hit all alike. ``realized/ideal`` is the measured speedup over
    dense divided by the GMACs ratio (1.0: the method turns all its saved MACs into time).
    ``weights`` (random | demo | hub | PATH): the weights the model is built with; the CLI gives
    the demo model its demo weights, as ``flops``, ``export`` and suites do. Trainable methods run
    with the artifact a suite would use on these weights, else with untrained parts
    (:func:`vitbench.harness.trained.cost_params`).
    Channel methods prune the model once per keep ratio (calibration: 2 seeded
    batches of 32 random images and labels) and the pruned model is timed. ``progress``: a tqdm
    bar on stderr (one step per timed configuration; off when stderr is not a terminal).
    """
    from tabulate import tabulate

    dtypes = dtype if isinstance(dtype, list) else [dtype]
    model = create_model(model_name, weights, model_args=model_args, data_config=data_config)
    entry = ModelSpec(model_name, weights, freeze_args(model_args or {}), freeze_args(data_config or {}))
    size = tuple(resolve_data_config(model)["input_size"])
    configs = [("dense", token_method("dense").params_for(1.0, model), model)]
    for name in methods:
        cls: Any = METHODS.get(name)
        own = {k: v for k, v in sets.items() if k in cls.defaults()}
        for keep in keeps:
            params = cost_params(cls, keep, model, own, entry)
            channel = issubclass(cls, ChannelMethod)
            pruned = cls.prune(model, params, _random_calib(model, size)) if channel else model
            configs.append((name, params, pruned))
    gmacs = {}
    for i, (name, params, m) in enumerate(configs):
        with _applied(name, m, params, selection):
            gmacs[i] = count_gmacs(m, size)
    gd = gmacs_digits(gmacs.values())
    rows = []
    info = None
    from tqdm.auto import tqdm

    steps = len(dtypes) * len(batch_sizes) * rounds * len(configs)
    bar = tqdm(total=steps, desc="timing", unit="config", disable=None if progress else True, leave=False)
    for dt in dtypes:
        for bs in batch_sizes:
            runs: dict[int, list[float]] = {i: [] for i in range(len(configs))}
            for _ in range(rounds):
                for i, (name, params, m) in enumerate(configs):
                    with _applied(name, m, params, selection):
                        info = measure_throughput(
                            m, size, bs, device, dt, warmup, repeats, channels_last, compile
                        )
                    runs[i].append(info.img_per_s)
                    bar.update()
            med = {i: sorted(v)[len(v) // 2] for i, v in runs.items()}
            for i, (name, params, _m) in enumerate(configs):
                ideal, real = gmacs[0] / gmacs[i], med[i] / med[0]
                setting = METHODS.get(name).setting(params)
                setting = ", ".join(p for p in setting.split(", ") if p != "untrained")
                rows.append(
                    [
                        name,
                        setting,
                        str(dt).removeprefix("torch."),
                        bs,
                        f"{gmacs[i]:.{gd}f}",
                        f"{med[i]:.1f}",
                        f"{min(runs[i]):.1f}–{max(runs[i]):.1f}",
                        f"{ideal:.2f}",
                        f"{real:.2f}",
                        "-" if i == 0 else f"{real / ideal:.2f}",
                    ]
                )
    bar.close()
    assert info is not None
    extras = "".join([", channels_last" if channels_last else "", ", torch.compile" if compile else ""])
    head = (
        f"{model_name}, {weights} weights, {info.device}{extras}, "
        f"{rounds} interleaved rounds (median; min–max: the run-to-run spread)"
    )
    cols = [
        "method",
        "setting",
        "dtype",
        "batch",
        "GMACs",
        "img/s",
        "img/s over rounds (min–max)",
        "GMACs speedup (ideal)",
        "measured speedup",
        "realized/ideal",
    ]
    adaptive = adaptive_methods(methods)
    note = (
        f"\n{', '.join(adaptive)}: GMACs vary per image; the GMACs here are those of the counter's one "
        "synthetic input, not the mean over the timed batch"
        if adaptive
        else ""
    )
    return head + "\n" + tabulate(rows, headers=cols, tablefmt="github") + note


def _applied(name: str, model: Any, params: Any, selection: str) -> Any:
    """The token method's patch context, or nothing for a channel method's (already pruned) model."""
    import contextlib

    if issubclass(METHODS.get(name), ChannelMethod):
        return contextlib.nullcontext()
    return token_method(name).apply(model, params, selection)


def _random_calib(model: Any, size: tuple) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Two seeded batches of 32 standard-normal images and uniform labels (costs only)."""
    gen = torch.Generator().manual_seed(0)
    classes = max(int(getattr(model, "num_classes", 0) or 0), 1)
    return [
        (torch.randn(32, *size, generator=gen), torch.randint(0, classes, (32,), generator=gen))
        for _ in range(2)
    ]
