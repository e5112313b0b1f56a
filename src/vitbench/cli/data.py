"""``vitbench data`` and ``cache``: checking a dataset and managing the corrupted-image cache."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from vitbench.cli.options import AddCommand, ParserContext, parse_sets
from vitbench.core.errors import VitbenchError


def cmd_data(args: argparse.Namespace) -> int:
    """Load a dataset as a suite would and list its size, classes and every skipped/converted file."""
    # deferred: datasets and suites load torch; `vitbench --help` stays free of it
    from vitbench.data import DATASETS, load_dataset
    from vitbench.harness.suites import default_split

    needs_root = DATASETS.info(args.name).get("needs_root", False)  # unknown names: close matches
    if needs_root and not args.root:
        raise VitbenchError(
            f"dataset '{args.name}' needs a data path; pass --root PATH (e.g. vitbench data {args.name} "
            "--root /data/...)"
        )
    if needs_root and not Path(args.root).expanduser().exists():
        raise VitbenchError(f"data path {args.root} does not exist; pass an existing folder with --root PATH")
    split = args.split or default_split(args.name)
    data = load_dataset(
        args.name, root=args.root, split=split, limit=args.limit, class_order=args.class_order
    )
    classes = ", ".join(data.classes[:5]) + (", ..." if len(data.classes) > 5 else "")
    print(f"{args.name} {split}: {len(data)} images, {len(data.classes)} classes ({classes})")
    for line in mapping_lines(data, args.class_order):
        print(line)
    for path, reason in getattr(data, "skipped", ()):
        print(f"skipped   {path}: {reason}")
    for path, note in getattr(data, "notes", ()):
        print(f"converted {path}: {note}")
    return 0


def mapping_lines(data: Any, class_order: str | None, show: int = 3) -> list[str]:
    """Lines showing which class folder got which label: the first and last ``show`` pairs.

    Adds a line when the natural and the lexicographic orders label the folders differently,
    so a user of a torchvision-trained model sees the choice. Nothing for data sets without
    class folders (arrays, a flat folder with a label file).
    """
    # deferred: the class-order rules live with the datasets, which load numpy
    from vitbench.data.classes import class_list_digest, order_classes

    pairs = [(f, k) for k, f in enumerate(getattr(data, "class_folders", ()) or ()) if f]
    if not pairs:
        return []
    shown = pairs if len(pairs) <= 2 * show else [*pairs[:show], None, *pairs[-show:]]
    text = ", ".join("..." if p is None else f"{p[0]} -> {p[1]}" for p in shown)
    names = [f for f, _ in pairs]
    digest = class_list_digest(data.class_folders)
    out = [f"labels ({class_order or 'natural'} order, class list {digest}): {text}"]
    if class_order in (None, "natural", "lexicographic") and order_classes(names, "natural") != order_classes(
        names, "lexicographic"
    ):
        out.append(
            "note: natural and lexicographic orders label these folders differently (timm's reader "
            "sorts naturally, torchvision's ImageFolder lexicographically); set class_order to match "
            "how the model was trained"
        )
    return out


def _cache_for(args: argparse.Namespace, suite_dir: str | None = None) -> Any:
    # deferred: the cache loads torch; `vitbench --help` stays free of it
    from vitbench.data.cache import CorruptionCache, resolve_dir

    root = resolve_dir(args.cache_dir or suite_dir)
    if root is None:
        raise VitbenchError(
            "the corruption cache is off (VITBENCH_CACHE=off or cache_dir: off); pass --cache-dir DIR"
        )
    workers = getattr(args, "workers", None)
    return CorruptionCache(root, workers=workers, progress=not getattr(args, "no_progress", True))


def cmd_cache(args: argparse.Namespace) -> int:
    """Corrupted-image cache: build a suite's entries, show size and entries, or clear it."""
    # deferred: tabulate, only when a table is printed
    from tabulate import tabulate

    if args.action == "build":
        # deferred: suites and the cache load torch; `vitbench --help` stays free of it
        from vitbench.data.cache import build_suite
        from vitbench.harness.suites import load_suite

        if not args.suite:
            raise VitbenchError("cache build needs a suite, e.g. `vitbench cache build noise-robustness`")
        suite = load_suite(args.suite, parse_sets(args.set))
        cache = _cache_for(args, suite.cache_dir)
        stats = build_suite(suite, cache)
        print(
            f"cache {cache.root}: built {stats.built} entries ({stats.images} images) "
            f"in {stats.wall_s:.1f} s "
            f"with {stats.workers} process(es); {stats.reused} already there"
        )
        return 0
    cache = _cache_for(args)
    if args.action == "clear":
        n = cache.clear()
        print(f"removed {n} entries from {cache.root}")
        return 0
    entries = cache.entries()
    groups: dict[tuple, list] = {}
    for e in entries:
        k = e.key
        size = "x".join(str(v) for v in k.get("input_size", []))
        groups.setdefault((k.get("dataset"), k.get("split"), size, k.get("noise")), []).append(e)
    rows = [
        [
            ds,
            split,
            size,
            noise,
            ",".join(f"{lv:g}" for lv in sorted({float(e.key.get("level", 0)) for e in es})),
            ",".join(str(sd) for sd in sorted({int(e.key.get("seed", 0)) for e in es})),
            len(es),
            f"{sum(e.size_bytes for e in es) / 2**20:.1f}",
        ]
        for (ds, split, size, noise), es in sorted(groups.items(), key=lambda kv: tuple(map(str, kv[0])))
    ]
    print(f"cache {cache.root}: {len(entries)} entries, {cache.size_bytes() / 2**20:.1f} MiB")
    if rows:
        headers = ["dataset", "split", "size", "noise", "levels", "seeds", "entries", "MiB"]
        print(tabulate(rows, headers=headers, tablefmt="github"))
    return 0


# -- parsers ----------------------------------------------------------------------------------
def _add_data(sub: Any, ctx: ParserContext) -> None:
    da = sub.add_parser("data", help="check a dataset: size, classes, skipped and converted files")
    da.add_argument("name", help="dataset registry key (imagenet, imagenet-c, image-folder, cifar10, ...)")
    da.add_argument(
        "--root", default=None, help="data folder (datasets that need one: imagenet, cifar10, ...)"
    )
    da.add_argument(
        "--split", default=None, help="split (default: the dataset's evaluation split, test or val)"
    )
    da.add_argument("--limit", type=int, default=None, help="only the first N images")
    da.add_argument(
        "--class-order",
        default=None,
        metavar="ORDER",
        help="folder datasets: natural (default, as timm), lexicographic (torchvision), or a file of "
        "class names, one per line (label = line)",
    )
    da.set_defaults(fn=cmd_data)


def _add_cache(sub: Any, ctx: ParserContext) -> None:
    ca = sub.add_parser("cache", help="corrupted-image cache: build SUITE | info | clear")
    ca.add_argument(
        "action",
        choices=["build", "info", "clear"],
        help="build a suite's entries, show them, or delete them",
    )
    ca.add_argument("suite", nargs="?", default=None, help="with build: suite YAML path or name")
    ca.add_argument(
        "--cache-dir",
        default=None,
        help="cache folder (default: suite cache_dir, $VITBENCH_CACHE, ~/.cache/vitbench)",
    )
    ca.add_argument("--workers", type=int, default=None, help="build processes (default: CPU cores)")
    ca.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="dotted suite field")
    ca.add_argument("--no-progress", action="store_true", help="no progress bars")
    ca.set_defaults(fn=cmd_cache)


#: The commands of this group by name.
COMMANDS: dict[str, AddCommand] = {"data": _add_data, "cache": _add_cache}
