"""Corruption cache: byte-identical hits, corruption detection, unwritable/full dirs, harness use."""

from __future__ import annotations

import dataclasses
import errno
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from vitbench.cli.main import main
from vitbench.core.errors import VitbenchError
from vitbench.data import default_workers
from vitbench.data.cache import CacheKey, CorruptionCache, content_hash, resolve_dir
from vitbench.data.noise import apply_noise
from vitbench.harness.runner import Harness
from vitbench.harness.suites import expand, suite_from_dict
from vitbench.store.results import load_results

RNG = np.random.default_rng(0)
IMAGES = RNG.integers(0, 256, size=(40, 32, 32, 3), dtype=np.uint8)
IDS = np.arange(100, 140, dtype=np.int64)


def key(noise: str = "shot-noise", level: float = 2.0, seed: int = 0) -> CacheKey:
    return CacheKey("toy", "test", "ids", content_hash(IMAGES), (32, 32), "crop_pct=1", noise, level, seed)


def messages() -> tuple[list[str], Any]:
    out: list[str] = []
    return out, out.append


def test_hit_is_byte_identical_to_in_memory_and_reused(tmp_path: Path) -> None:
    logs, log = messages()
    cache = CorruptionCache(tmp_path, workers=1, log=log)
    keys = [key(), key("salt-pepper", 0.1), key("shot-noise", 2.0, seed=1)]
    stats = cache.build(IMAGES, IDS, keys)
    assert (stats.built, stats.reused, stats.images) == (3, 0, 120)
    for k in keys:
        hit = cache.lookup(k)
        assert isinstance(hit, np.memmap) and hit.dtype == np.uint8
        assert np.array_equal(hit, apply_noise(IMAGES, IDS, k.noise, k.level, k.seed))
    assert not np.array_equal(cache.lookup(keys[0]), cache.lookup(keys[2]))  # seed is in the key
    again = CorruptionCache(tmp_path, workers=1, log=log).build(IMAGES, IDS, keys)
    assert (again.built, again.reused) == (0, 3) and logs == []
    assert {e.key["noise"] for e in cache.entries()} == {"shot-noise", "salt-pepper"}
    assert cache.size_bytes() > 3 * IMAGES.nbytes


def test_two_processes_give_the_same_bytes(tmp_path: Path) -> None:
    one = CorruptionCache(tmp_path / "one", workers=1)
    two = CorruptionCache(tmp_path / "two", workers=2)
    keys = [key("gaussian-noise", 3.0), key("uniform-noise", 0.3)]
    one.build(IMAGES, IDS, keys)
    assert two.build(IMAGES, IDS, keys).workers == 2
    for k in keys:
        assert one.path(k).read_bytes() == two.path(k).read_bytes()
    assert not list((tmp_path / "two").rglob("*.tmp*"))  # temporary files are gone


@pytest.mark.parametrize("damage", ["flip", "truncate", "sidecar"])
def test_corrupted_entry_is_detected_and_rebuilt(tmp_path: Path, damage: str) -> None:
    logs, log = messages()
    cache = CorruptionCache(tmp_path, workers=1, log=log)
    k = key()
    cache.build(IMAGES, IDS, [k])
    good = cache.path(k).read_bytes()
    path = cache.path(k)
    if damage == "flip":
        data = bytearray(good)
        data[-5] ^= 0xFF
        path.write_bytes(bytes(data))
    elif damage == "truncate":
        path.write_bytes(good[: len(good) // 2])
    else:
        path.with_suffix(".json").unlink()
    fresh = CorruptionCache(tmp_path, workers=1, log=log)  # a new process: nothing verified yet
    assert fresh.lookup(k) is None
    assert len(logs) == 1 and "invalid" in logs[0] and "rebuilding" in logs[0]
    assert fresh.build(IMAGES, IDS, [k]).built == 1
    assert path.read_bytes() == good


def test_unwritable_and_full_cache_dirs_raise_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(VitbenchError, match="cannot create cache directory") as info:
        CorruptionCache(blocker / "cache", workers=1).build(IMAGES, IDS, [key()])
    assert "\n" not in str(info.value) and "VITBENCH_CACHE" in str(info.value)

    from vitbench.data import cache as cache_mod

    def full(self: Any, start: int, rows: np.ndarray) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cache_mod._Writer, "write", full)
    cache = CorruptionCache(tmp_path / "c", workers=1)
    with pytest.raises(VitbenchError, match="is full"):
        cache.build(IMAGES, IDS, [key()])
    assert not [p for p in (tmp_path / "c").rglob("*") if p.is_file()]  # no partial entry left


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores directory permissions")
def test_read_only_cache_dir(tmp_path: Path) -> None:
    cache = CorruptionCache(tmp_path, workers=1)
    cache.build(IMAGES, IDS, [key()])
    os.chmod(cache.dir, 0o555)
    try:
        assert cache.lookup(key()) is not None  # existing entries stay readable
        with pytest.raises(VitbenchError, match="not writable"):
            cache.build(IMAGES, IDS, [key("fog", 1.0)])
    finally:
        os.chmod(cache.dir, 0o755)


def test_cache_dir_resolution_and_bad_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VITBENCH_CACHE", str(tmp_path / "env"))
    assert resolve_dir(None) == tmp_path / "env"
    assert resolve_dir(str(tmp_path / "suite")) == tmp_path / "suite"  # suite key beats the env
    assert resolve_dir("off") is None
    monkeypatch.delenv("VITBENCH_CACHE")
    assert resolve_dir(None) == Path.home() / ".cache" / "vitbench"
    monkeypatch.setenv("VITBENCH_CACHE_WORKERS", "two")
    with pytest.raises(VitbenchError, match="not an integer"):
        default_workers("cache")
    with pytest.raises(VitbenchError, match="cache_dir must be a folder path"):
        suite_from_dict({**TINY, "cache_dir": 3})
    with pytest.raises(VitbenchError, match="is for \\(16, 16\\) images"):
        CorruptionCache(tmp_path, workers=1).build(
            IMAGES, IDS, [dataclasses.replace(key(), input_size=(16, 16))]
        )
    with pytest.raises(VitbenchError, match="needs images of at least 32px"):
        CorruptionCache(tmp_path, workers=1).build(
            IMAGES[:, :16, :16], IDS, [dataclasses.replace(key("fog", 1.0), input_size=(16, 16))]
        )


# -- through the harness ---------------------------------------------------------------------------

TINY = {
    "name": "tiny-cache",
    "dataset": {"name": "mnist-demo", "split": "test", "limit": 24},
    "models": [{"name": "vitbench_demo_vit", "weights": "random"}],
    "methods": ["dense", "evit"],
    "keep_ratios": [0.5],
    "noises": ["clean", {"name": "shot-noise", "levels": [4]}, {"name": "salt-pepper", "levels": [0.2]}],
    "batch_size": 12,
    "bootstrap": 20,
    "throughput": False,
}
METRICS = [
    "cell_key",
    "method",
    "noise",
    "level",
    "top1",
    "top5",
    "nll",
    "ece",
    "top1_ci_low",
    "top1_ci_high",
]


class CountingCache(CorruptionCache):
    built_total = 0

    def build(self, *args: Any, **kwargs: Any) -> Any:
        stats = super().build(*args, **kwargs)
        self.built_total += stats.built
        return stats


def run_suite(tmp_path: Path, name: str, cache: Any, **changes: Any) -> Any:
    suite = suite_from_dict({**TINY, **changes})
    harness = Harness(
        suite, str(tmp_path / f"{name}.sqlite"), progress=False, log=lambda _m: None, cache=cache
    )
    summary = harness.run(expand(suite))
    assert summary.failed == 0, summary.errors
    df = load_results(tmp_path / f"{name}.sqlite")
    return df.sort_values("cell_key")[METRICS].reset_index(drop=True)


def test_harness_records_deterministic_with_and_without_cache(tmp_path: Path) -> None:
    cache = CountingCache(tmp_path / "cache", workers=1)
    in_memory = run_suite(tmp_path, "a", False)
    cached = run_suite(tmp_path, "b", cache)  # every noisy image read back from the cache
    assert cache.built_total == 2  # one corruption pass per noisy condition, shared by both methods
    assert in_memory.equals(cached)
    other = run_suite(tmp_path, "c", cache, seeds=[1], methods=["dense"])
    assert cache.built_total == 4  # another seed, other corrupted images
    both = cached.merge(other, on=["method", "noise", "level"], suffixes=("", "_s1"))
    clean = both["noise"] == "clean"
    assert len(both) == 3 and (both.loc[clean, "nll"] == both.loc[clean, "nll_s1"]).all()
    assert (both.loc[~clean, "nll"] != both.loc[~clean, "nll_s1"]).all()


def test_harness_falls_back_to_memory_when_cache_unwritable(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    logs: list[str] = []
    suite = suite_from_dict({**TINY, "methods": ["dense"], "cache_dir": str(blocker / "cache")})
    harness = Harness(suite, str(tmp_path / "r.sqlite"), progress=False, log=logs.append)
    assert harness.run(expand(suite)).failed == 0
    warnings = [m for m in logs if m.startswith("warning:")]
    assert len(warnings) == 1 and "corrupting images in memory instead" in warnings[0]
    assert load_results(tmp_path / "r.sqlite")["top1"].notna().all()


def test_cli_cache_build_info_clear(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    suite = tmp_path / "suite.yaml"
    suite.write_text(yaml.safe_dump(TINY))
    cache_dir = str(tmp_path / "cli-cache")
    assert (
        main(["cache", "build", str(suite), "--cache-dir", cache_dir, "--workers", "1", "--no-progress"]) == 0
    )
    assert "built 2 entries (48 images)" in capsys.readouterr().out
    assert main(["cache", "build", str(suite), "--cache-dir", cache_dir, "--workers", "1"]) == 0
    assert "built 0 entries" in capsys.readouterr().out
    assert main(["cache", "info", "--cache-dir", cache_dir]) == 0
    out = capsys.readouterr().out
    assert "2 entries" in out and "shot-noise" in out and "salt-pepper" in out and "32x32" in out
    assert main(["cache", "clear", "--cache-dir", cache_dir]) == 0
    assert "removed 2 entries" in capsys.readouterr().out
    assert main(["cache", "build", "--cache-dir", cache_dir]) == 2
    assert "needs a suite" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["cache", "build", str(suite), "--cache-dir", str(blocker / "c"), "--workers", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: cannot create cache directory") and "\n" not in err


def test_one_cache_key_builder_for_harness_calibration_and_cache_build(tmp_path: Path) -> None:
    """Harness keys, `vitbench cache build` keys and the builder agree; hashes or arrays alike."""
    from vitbench.core.models import data_config
    from vitbench.data import load_dataset
    from vitbench.data.cache import build_suite, cache_key, prep_rule
    from vitbench.data.files import ids_hash

    suite = suite_from_dict({**TINY, "noises": [{"name": "gaussian-noise", "levels": [2]}]})
    h = Harness(suite, str(tmp_path / "r.sqlite"), progress=False, cache=False)
    cell = expand(suite)[0]
    cfg = data_config(h.model(cell.model))
    data = load_dataset(suite.dataset.name, split=suite.dataset.split, limit=suite.dataset.limit)
    key = cache_key(data.name, data.split, data.sample_ids, data.images, cfg, "gaussian-noise", 2, 0)
    ids, content = ids_hash(data.sample_ids), content_hash(data.images)
    same = cache_key(data.name, data.split, ids, content, cfg, "gaussian-noise", 2.0, 0)
    assert key == same == h.cache_key(cfg, "gaussian-noise", 2, 0)
    assert key.input_size == tuple(cfg["input_size"][1:]) and key.prep == prep_rule(cfg)
    assert key.ids_hash == data.ids_hash()
    cache = CorruptionCache(tmp_path / "c", workers=1)
    build_suite(suite, cache, log=lambda _m: None)
    assert cache.lookup(key) is not None  # `cache build` wrote the entry under the same key


def test_default_workers_one_rule_two_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from vitbench.data.files import usable_cpus

    for var in ("VITBENCH_WORKERS", "VITBENCH_CACHE_WORKERS", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    cores = usable_cpus()
    assert default_workers("cache") == cores
    assert default_workers() == default_workers("loader") == max(1, min(16, cores))
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(cores + 1))  # loaders share the cores, the cache does not
    assert default_workers("loader") == 1 and default_workers("cache") == cores
    monkeypatch.setenv("VITBENCH_WORKERS", "0")  # 0: load in the main process
    monkeypatch.setenv("VITBENCH_CACHE_WORKERS", "3")
    assert default_workers("loader") == 0 and default_workers("cache") == 3
    monkeypatch.setenv("VITBENCH_CACHE_WORKERS", "0")
    with pytest.raises(VitbenchError, match="VITBENCH_CACHE_WORKERS='0' must be >= 1"):
        default_workers("cache")
    monkeypatch.setenv("VITBENCH_WORKERS", "-2")
    with pytest.raises(VitbenchError, match="VITBENCH_WORKERS='-2' must be >= 0"):
        default_workers("loader")
