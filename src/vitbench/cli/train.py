"""``vitbench finetune``, ``bench-train`` and ``train-demo``: the training side of the command line."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from vitbench.cli.options import AddCommand, ParserContext, add_model_options, model_options, parse_sets

#: Help of the hyper-parameter flags (one per ``TrainConfig`` option).
_HELP = {
    "epochs": "passes over the training data (fractions allowed)",
    "max_steps": "stop after this many optimiser steps (default: all epochs)",
    "batch_size": "images per step, all processes together",
    "lr": "peak learning rate of the predictors (default: the method's; DynamicViT 1e-3, dTPS 2.5e-4, "
    "DiffRate 0.01)",
    "min_lr": "learning rate at the end of the cosine decay",
    "warmup_epochs": "linear warmup length in epochs",
    "weight_decay": "AdamW weight decay (not on norms, biases, tokens)",
    "backbone_lr_scale": "backbone lr = lr x this (default: the method's; DynamicViT 0.01, dTPS 1)",
    "ratio_weight": "keep-ratio loss weight (default 2.0; DiffRate: its GFLOPs loss, default 5.0)",
    "distill_weight": "KL(teacher||student) logit distillation weight (default 0.5)",
    "token_weight": "token distillation weight (default 0.5)",
    "clip_grad": "clip the gradient norm to this value (default: no clipping)",
    "augment": "random whole-batch shift of the training images",
    "save_backbone": "store the fine-tuned backbone in the artifact",
    "artifact_dtype": "float16 or float32 storage",
    "checkpoint_every": "steps between checkpoints (resume after an interruption)",
    "seed": "seed of batch order, Gumbel noise and augmentation",
}


#: Help of the ``--no-X`` flags of options that are on by default (says what turning them off does).
_NO_HELP = {
    "save_backbone": "do not store the fine-tuned backbone in the artifact (only the method's trained "
    "parts; the suite then evaluates them on the original backbone)",
}


_INTS = ("max_steps", "batch_size", "checkpoint_every", "seed")


def _add_finetune(sub: Any, ctx: ParserContext) -> None:
    # deferred: dataclasses (and inspect) wait until the parser is built
    import dataclasses

    # deferred: TrainConfig's dataclass is built with the parser, not on `import vitbench.cli.main`
    from vitbench.train.config import TRAIN_OPTIONS, TrainConfig

    ft = sub.add_parser(
        "finetune",
        help="train a method's learned parts (DynamicViT, dTPS) into a safetensors artifact",
        description="Fine-tune with distillation from the dense model; resumes from its last checkpoint.",
    )
    ft.add_argument("--model", default="vitbench_demo_vit", help="timm model name")
    ft.add_argument(
        "--weights", default=None, help="random | demo | hub | PATH (default: demo for the demo model)"
    )
    add_model_options(ft)
    ft.add_argument(
        "--method", required=True, help="trainable method: dynamicvit | dtps | diffrate (its rate search)"
    )
    ft.add_argument("--keep", type=float, default=0.7, help="keep ratio (the method's rho)")
    ft.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="method parameter")
    ft.add_argument("--data", default="mnist-demo", help="registered dataset (see datasets/)")
    ft.add_argument("--split", default="train", help="training split (default train)")
    ft.add_argument("--root", default=None, help="data folder for datasets that need one")
    ft.add_argument("--limit", type=int, default=None, help="use only the first N training images")
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    for name in TRAIN_OPTIONS:
        flag, default = "--" + name.replace("_", "-"), defaults[name]
        if isinstance(default, bool):
            if default:
                ft.add_argument(
                    f"--no-{name.replace('_', '-')}",
                    dest=name,
                    action="store_false",
                    help=_NO_HELP.get(name, f"turn off: {_HELP[name]}"),
                )
            else:
                ft.add_argument(flag, dest=name, action="store_true", help=_HELP[name])
            continue
        kind = str if isinstance(default, str) else int if name in _INTS else float
        shown = "" if default is None or "default" in _HELP[name] else f" (default {default})"
        ft.add_argument(flag, dest=name, type=kind, default=default, help=_HELP[name] + shown)
    ft.add_argument("--out", default=None, help="artifact path (default: the artifact folder, named by key)")
    ft.add_argument("--work-dir", default=None, help="checkpoint folder (default: <out>.ckpt)")
    ft.add_argument("--restart", action="store_true", help="ignore an existing checkpoint")
    ft.add_argument("--threads", type=int, default=None, help="torch threads (1 is fastest on a busy CPU)")
    ft.add_argument("--no-progress", action="store_true", help="no progress bar")
    ft.set_defaults(fn=cmd_finetune)


def _add_bench_train(sub: Any, ctx: ParserContext) -> None:
    bt = sub.add_parser("bench-train", help="finetune img/s vs a bare PyTorch loop (demo model)")
    bt.add_argument("--method", default="dynamicvit", help="trainable method (default dynamicvit)")
    bt.add_argument("--batch-size", type=int, default=64, help="images per step (default 64)")
    bt.add_argument("--steps", type=int, default=20, help="timed steps per round (default 20)")
    bt.add_argument("--threads", type=int, default=None, help="torch threads for both loops")
    bt.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median reported)")
    bt.set_defaults(fn=cmd_bench_train)


def config_from_args(args: argparse.Namespace) -> Any:
    """:class:`~vitbench.train.config.TrainConfig` from parsed ``finetune`` arguments.

    Raises:
        VitbenchError: a bad ``--set``, ``--model-arg`` or ``--data-config`` value.
    """
    # deferred: the demo architecture and models load torch and timm; `vitbench --help` stays free of them
    from vitbench.core.demo import ARCH
    from vitbench.core.models import freeze_args
    from vitbench.train.config import TRAIN_OPTIONS, TrainConfig

    weights = args.weights or ("demo" if args.model.split(".")[0] == ARCH else "hub")
    margs, dcfg = model_options(args)
    return TrainConfig(
        model=args.model,
        method=args.method,
        weights=weights,
        keep_ratio=args.keep,
        method_params=tuple(sorted(parse_sets(args.set).items())),
        model_args=freeze_args(margs),
        data_config=freeze_args(dcfg),
        dataset=args.data,
        split=args.split,
        root=args.root,
        limit=args.limit,
        **{name: getattr(args, name) for name in TRAIN_OPTIONS},
    )


def cmd_finetune(args: argparse.Namespace) -> int:
    """Train the parts of a trainable method and write the artifact; exit 130 when interrupted."""
    # deferred: accelerate loads torch; `vitbench --help` stays free of it
    from accelerate import PartialState

    # deferred: training loads torch and timm, as above
    from vitbench.methods.base import check_keep_ratio
    from vitbench.methods.requirements import check_pairs
    from vitbench.train.finetune import finetune
    from vitbench.train.loop import TrainingInterrupted

    check_keep_ratio(args.keep)
    cfg = config_from_args(args)
    check_pairs([(cfg.model, cfg.method)])  # an unsupported model is refused before any weights load
    try:
        res = finetune(
            cfg,
            out=Path(args.out) if args.out else None,
            work_dir=Path(args.work_dir) if args.work_dir else None,
            restart=args.restart,
            progress=not args.no_progress,
            threads=args.threads,
        )
    except TrainingInterrupted as exc:
        print(f"stopped: {exc}")
        return 130
    if not PartialState().is_main_process:
        return 0
    losses = ", ".join(f"{k} {v:.4f}" for k, v in res.losses.items())
    resumed = f", resumed at step {res.resumed_from}" if res.resumed_from else ""
    print(
        f"{cfg.method} keep {cfg.keep_ratio:g}: {res.steps} steps{resumed}, {res.train_s:.1f} s "
        f"({res.img_per_s:.1f} img/s); last losses: {losses}"
    )
    print(f"artifact {res.path} (key {res.key[:16]}); suites with {cfg.model}, weights {cfg.weights} find it")
    return 0


def cmd_bench_train(args: argparse.Namespace) -> int:
    """Training img/s of ``vitbench finetune`` vs a bare PyTorch loop on the demo model."""
    # deferred: timing loads torch and timm; `vitbench --help` stays free of them
    from vitbench.bench.speed import bench_train

    bench_train(args.method, args.batch_size, args.steps, args.threads, args.rounds)
    return 0


def cmd_train_demo(args: argparse.Namespace) -> int:
    """Re-train the embedded demo model from scratch (writes safetensors)."""
    # deferred: training loads torch and timm; `vitbench --help` stays free of them
    from vitbench.core.demo import default_weights_path
    from vitbench.train.demo import train_demo, write_demo_record

    out = Path(args.output) if args.output else default_weights_path()
    kwargs = {} if args.epochs is None else {"epochs": args.epochs}
    info = train_demo(out, seed=args.seed, **kwargs)
    command = "vitbench train-demo" + ("" if args.epochs is None else f" --epochs {args.epochs}")
    record = write_demo_record(info, out.with_suffix(".json"), command)
    print(f"wrote {out} and {out.with_suffix('.json')}: test top-1 {record['test_top1']:.2f}%")
    return 0


def _add_train_demo(sub: Any, ctx: ParserContext) -> None:
    td = sub.add_parser("train-demo", help="re-train the embedded demo ViT from scratch")
    td.add_argument("--output", default=None, help="default: the packaged asset path")
    td.add_argument("--epochs", type=int, default=None, help="training epochs (default 30)")
    td.add_argument("--seed", type=int, default=0, help="seed of init, batch order and augmentation")
    td.set_defaults(fn=cmd_train_demo)


#: The commands of this group by name.
COMMANDS: dict[str, AddCommand] = {
    "train-demo": _add_train_demo,
    "finetune": _add_finetune,
    "bench-train": _add_bench_train,
}

__all__ = ["COMMANDS", "cmd_bench_train", "cmd_finetune", "cmd_train_demo", "config_from_args"]
