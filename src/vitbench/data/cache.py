"""On-disk cache of corrupted images, built once and shared by every method of a sweep.

One entry holds the whole dataset split under one noise condition: uint8 ``[N, h, w, 3]`` at
the model's input size, keyed by (dataset, split, sample-ids hash, image-content hash, input
size and resize/crop rule, noise, level, seed, implementation versions). It is stored as
``<dir>/v1/<digest>.npy`` (opened with a copy-on-write ``numpy.memmap``) plus a JSON sidecar
``<digest>.json`` holding the key, shape, dtype and the sha256 of the ``.npy`` file. An entry
whose sidecar is missing or does not match its file (truncated, corrupted, half-written) is
detected, deleted and rebuilt; each process hashes an entry once (sha256 over the file, about
1 s per GB) and then trusts it while its size, mtime and inode are unchanged. Writes go to a
temporary file that is renamed into place (sidecar first), so readers never see a partial entry
and concurrent writers cannot corrupt one (at worst they corrupt the same images twice).

Missing entries are built in worker processes (``concurrent.futures.ProcessPoolExecutor``
over chunks of samples of every missing entry at once, a tqdm bar over images). Every image is
corrupted by its own generator keyed by (seed, sample id, noise, level), so the bytes do not
depend on the number of workers or the chunking. Workers start with ``forkserver`` (``spawn``
where it is missing), never ``fork`` of a process that runs torch threads; as with any such
pool, a script that builds a cache must guard its entry point with ``if __name__ == "__main__"``.

Where the cache lives (first that is set): ``vitbench cache --cache-dir``, the suite key
``cache_dir``, the environment variable ``VITBENCH_CACHE``, else ``~/.cache/vitbench``. The
value ``off`` disables the cache (images are corrupted in memory for each use).

Failure policy: :meth:`CorruptionCache.build` raises a one-line :class:`VitbenchError` when
the directory cannot be created or written, or the disk is full (``vitbench cache build``
exits 2 with it). The harness catches that error, prints one warning line and falls back to
in-memory corruption for the rest of the run: results are identical, only slower.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from vitbench.core.errors import VitbenchError
from vitbench.core.models import create_model, data_config
from vitbench.core.version import VERSION
from vitbench.data import load_dataset
from vitbench.data.files import default_workers, ids_hash
from vitbench.data.noise import NOISES, apply_noise, check_noise, check_size
from vitbench.data.prep import prep_rule as rule
from vitbench.data.prep import prepare_images

CACHE_ENV = "VITBENCH_CACHE"
OFF = "off"
FORMAT_VERSION = 1
_SUBDIR = f"v{FORMAT_VERSION}"
_FIX = f"set {CACHE_ENV} or the suite key cache_dir to a writable folder (or {CACHE_ENV}=off)"
_MIN_CHUNK = 8
_MAX_CHUNK = 256


# -- keys ------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class CacheKey:
    """Identity of one cache entry.

    Attributes:
        dataset: dataset registry key.
        split: dataset split.
        ids_hash: hash of the sample ids (:meth:`ImageSet.ids_hash`).
        content_hash: hash of the raw image bytes (:func:`content_hash`).
        input_size: ``(h, w)`` after resize/crop.
        prep: the resize/crop rule: timm's eval steps (:func:`vitbench.data.prep.prep_rule`).
        noise: registered noise name (never ``clean``).
        level: severity or continuous level.
        seed: run seed.
    """

    dataset: str
    split: str
    ids_hash: str
    content_hash: str
    input_size: tuple[int, int]
    prep: str
    noise: str
    level: float
    seed: int

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (also stored in the sidecar)."""
        d = dataclasses.asdict(self)
        d["input_size"] = list(self.input_size)
        d["level"] = float(self.level)
        return d

    def digest(self) -> str:
        """32 hex chars of sha256 over the key, the cache format and the noise implementation."""
        blob = json.dumps({**self.to_dict(), "impl": implementation_versions()}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:32]

    def label(self) -> str:
        """Short description, e.g. ``mnist-demo/test fog@3 s0 32x32``."""
        h, w = self.input_size
        return f"{self.dataset}/{self.split} {self.noise}@{self.level:g} s{self.seed} {h}x{w}"


_VERSIONS: dict[str, str] = {}


def implementation_versions() -> dict[str, str]:
    """Versions that change cached bytes: format, vitbench, imagecorruptions, timm, torchvision, Pillow.

    The last three prepare the pixels (:mod:`vitbench.data.prep`), the first three corrupt them.
    """
    if not _VERSIONS:
        from importlib import metadata

        def version(dist: str) -> str:
            try:
                return metadata.version(dist)
            except metadata.PackageNotFoundError:
                return "unknown"

        _VERSIONS.update(
            format=str(FORMAT_VERSION),
            vitbench=VERSION,
            imagecorruptions=version("imagecorruptions-imaug"),
            timm=version("timm"),
            torchvision=version("torchvision"),
            pillow=version("pillow"),
        )
    return dict(_VERSIONS)


def content_hash(images: np.ndarray) -> str:
    """16 hex chars of sha256 over the shape and bytes of uint8 ``[N, H, W, 3]`` images."""
    h = hashlib.sha256(repr(tuple(images.shape)).encode())
    h.update(np.ascontiguousarray(images).data)
    return h.hexdigest()[:16]


def prep_rule(cfg: dict[str, Any]) -> str:
    """The resize/crop rule of a timm data config as a key string (:func:`vitbench.data.prep.prep_rule`)."""
    return rule(cfg)


def cache_key(
    dataset: str,
    split: str,
    sample_ids: np.ndarray | str,
    images: np.ndarray | str,
    cfg: dict[str, Any],
    noise: str,
    level: float,
    seed: int,
) -> CacheKey:
    """The cache key of ``images`` of one dataset split, prepared by ``cfg``, under one noise.

    The one place a :class:`CacheKey` is assembled (evaluation images in the harness, the
    calibration images of channel methods, ``vitbench cache build``).

    Args:
        dataset: dataset registry key.
        split: the split the images come from.
        sample_ids: int64 ``[N]`` sample ids of the images, or their :func:`ids_hash`.
        images: uint8 ``[N, H, W, 3]`` images the entry is corrupted from (raw or prepared,
            as long as the same images give the same key), or their :func:`content_hash`.
        cfg: the model's timm data config: ``input_size`` ``(C, H, W)`` and the resize/crop
            rule (:func:`prep_rule`) that turn the images into the entry's pixels.
        noise: registered noise name (never ``clean``).
        level: its severity or continuous level.
        seed: run seed.

    Returns:
        The :class:`CacheKey` (input size ``(H, W)``, level as float, seed as int).
    """
    ids = sample_ids if isinstance(sample_ids, str) else ids_hash(sample_ids)
    content = images if isinstance(images, str) else content_hash(images)
    size = tuple(int(v) for v in cfg["input_size"][1:])
    return CacheKey(
        dataset, split, ids, content, (size[0], size[1]), prep_rule(cfg), noise, float(level), int(seed)
    )


def resolve_dir(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """The cache directory: ``explicit``, else ``$VITBENCH_CACHE``, else ``~/.cache/vitbench``.

    Returns:
        The directory, or ``None`` when the chosen value is ``off`` (cache disabled).
    """
    value = str(explicit) if explicit not in (None, "") else os.environ.get(CACHE_ENV) or ""
    if value.strip().lower() == OFF:
        return None
    return Path(value).expanduser() if value else Path.home() / ".cache" / "vitbench"


# -- workers ---------------------------------------------------------------------------------------

_WORKER_CLEAN: dict[str, np.ndarray] = {}


def _init_worker() -> None:
    """One thread per worker process: the processes are the parallelism."""
    try:
        import cv2

        cv2.setNumThreads(1)
    except ImportError:  # pragma: no cover - cv2 comes with imagecorruptions
        pass


def _corrupt_chunk(
    clean: str | np.ndarray, ids: np.ndarray, start: int, noise: str, level: float, seed: int
) -> np.ndarray:
    """Corrupt rows ``start:start + len(ids)`` of the clean images.

    Args:
        clean: uint8 ``[N, h, w, 3]`` images, or the path of a ``.npy`` file holding them
            (memory-mapped once per worker process).
        ids: int64 sample ids of the rows.
        start: first row.
        noise: noise name.
        level: its level.
        seed: run seed.

    Returns:
        uint8 ``[len(ids), h, w, 3]``.
    """
    if isinstance(clean, str):
        if clean not in _WORKER_CLEAN:
            _WORKER_CLEAN.clear()
            _WORKER_CLEAN[clean] = np.load(clean, mmap_mode="r")
        clean = _WORKER_CLEAN[clean]
    rows = np.asarray(clean[start : start + len(ids)])
    return apply_noise(rows, ids, noise, level, seed)


# -- the cache -------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Entry:
    """One cache entry as listed by :meth:`CorruptionCache.entries`."""

    digest: str
    key: dict[str, Any]
    shape: tuple[int, ...]
    size_bytes: int
    created: str


@dataclasses.dataclass
class BuildStats:
    """What :meth:`CorruptionCache.build` did."""

    built: int = 0
    reused: int = 0
    images: int = 0
    wall_s: float = 0.0
    workers: int = 1


class CorruptionCache:
    """Corrupted-image entries in one directory.

    Args:
        root: cache directory (see :func:`resolve_dir`); created on the first write.
        workers: processes for :meth:`build` (default ``default_workers("cache")``,
            :func:`vitbench.data.files.default_workers`); 1 builds in this process.
        progress: show a tqdm bar while building.
        log: where one-line warnings go (e.g. "entry corrupted, rebuilt").

    Example:
        >>> cache = CorruptionCache("/tmp/vb-cache", workers=2)  # doctest: +SKIP
        >>> cache.build(clean, ids, keys)  # corrupt every missing entry in 2 processes
        >>> images = cache.lookup(keys[0])  # uint8 [N, h, w, 3] memmap
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        workers: int | None = None,
        progress: bool = False,
        log: Callable[[str], None] = print,
    ) -> None:
        self.root = Path(root).expanduser()
        self.dir = self.root / _SUBDIR
        self.workers = default_workers("cache") if workers is None else int(workers)
        if self.workers < 1:
            raise VitbenchError(f"cache workers must be >= 1, got {workers}")
        self.progress = progress
        self.log = log
        self._verified: dict[Path, tuple[int, int, int]] = {}

    # -- paths and verification ------------------------------------------------------------------
    def path(self, key: CacheKey) -> Path:
        """The ``.npy`` file of ``key`` (its sidecar has the suffix ``.json``)."""
        return self.dir / f"{key.digest()}.npy"

    def lookup(self, key: CacheKey) -> np.ndarray | None:
        """The verified entry as a copy-on-write memmap, or ``None`` when missing or invalid.

        An invalid entry (sidecar missing or unreadable, key/shape/dtype/size/sha256 mismatch)
        is deleted (when the directory is writable) so that it is rebuilt.

        Returns:
            uint8 ``[N, h, w, 3]`` memmap (writable in memory, never written back) or ``None``.
        """
        path = self.path(key)
        if not path.is_file():
            return None
        problem = self._problem(path, key)
        if problem:
            self.log(f"warning: cache entry {key.label()} is invalid ({problem}); rebuilding it")
            self._remove(path)
            return None
        try:
            return np.load(path, mmap_mode="c")
        except (OSError, ValueError) as exc:
            self.log(f"warning: cache entry {key.label()} cannot be read ({exc}); rebuilding it")
            self._remove(path)
            return None

    def _problem(self, path: Path, key: CacheKey | None) -> str | None:
        """Why the entry at ``path`` is invalid, or ``None`` when it is sound."""
        try:
            st = path.stat()
        except OSError:
            return "file missing"
        stamp = (st.st_size, st.st_mtime_ns, st.st_ino)
        if self._verified.get(path) == stamp:
            return None
        meta = self._sidecar(path)
        if meta is None:
            return "sidecar missing or unreadable"
        if key is not None and meta.get("key") != key.to_dict():
            return "sidecar key differs"
        shape = tuple(meta.get("shape", ()))
        if meta.get("dtype") != "uint8" or len(shape) != 4:
            return "sidecar shape/dtype invalid"
        if st.st_size != int(meta.get("file_bytes", -1)):
            return f"size {st.st_size} B, expected {meta.get('file_bytes')} B"
        if _sha256_file(path) != meta.get("sha256"):
            return "sha256 mismatch"
        try:
            arr = np.load(path, mmap_mode="r")
        except (OSError, ValueError) as exc:
            return f"not a .npy file ({exc})"
        if arr.dtype != np.uint8 or tuple(arr.shape) != shape:
            return "array header differs from sidecar"
        self._verified[path] = stamp
        return None

    @staticmethod
    def _sidecar(path: Path) -> dict[str, Any] | None:
        try:
            meta = json.loads(path.with_suffix(".json").read_text())
        except (OSError, ValueError):
            return None
        return meta if isinstance(meta, dict) else None

    def _remove(self, path: Path) -> None:
        self._verified.pop(path, None)
        for p in (path, path.with_suffix(".json")):
            try:
                p.unlink()
            except FileNotFoundError:
                pass
            except OSError:
                return  # read-only cache: leave it; the entry is rebuilt elsewhere or in memory

    # -- building --------------------------------------------------------------------------------
    def _writable(self) -> None:
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise VitbenchError(
                f"cannot create cache directory {self.dir} ({exc.strerror or type(exc).__name__}); {_FIX}"
            ) from None
        if not os.access(self.dir, os.W_OK | os.X_OK):
            raise VitbenchError(f"cache directory {self.dir} is not writable; {_FIX}")

    def build(
        self,
        clean: np.ndarray,
        sample_ids: np.ndarray,
        keys: Sequence[CacheKey],
        workers: int | None = None,
    ) -> BuildStats:
        """Corrupt and store every missing entry of ``keys`` (all from the same clean images).

        Args:
            clean: uint8 ``[N, h, w, 3]`` clean images at the keys' input size.
            sample_ids: int64 ``[N]`` sample ids (keys of the per-sample generators).
            keys: entries to ensure; valid existing ones are reused.
            workers: override the instance's number of processes.

        Returns:
            Counts of built/reused entries, corrupted images, wall seconds and processes used.

        Raises:
            VitbenchError: the directory cannot be created or written, the disk is full, a key
                does not match the images' size, or a noise cannot corrupt images of this size.
        """
        start = time.perf_counter()
        n_workers = self.workers if workers is None else int(workers)
        stats = BuildStats(workers=n_workers)
        todo: list[CacheKey] = []
        for key in dict.fromkeys(keys):
            if tuple(clean.shape[1:3]) != tuple(key.input_size):
                raise VitbenchError(
                    f"cache key {key.label()} is for {key.input_size} images, got {clean.shape[1:3]}"
                )
            check_noise(key.noise, key.level)
            check_size(key.noise, clean.shape[1], clean.shape[2])
            if self.lookup(key) is None:
                todo.append(key)
            else:
                stats.reused += 1
        if not todo:
            stats.wall_s = time.perf_counter() - start
            return stats
        self._writable()
        n = len(clean)
        chunk = _chunk_size(n, n_workers)
        spans = [(a, min(a + chunk, n)) for a in range(0, n, chunk)]
        writers: dict[CacheKey, _Writer] = {}
        bar = _progress(self.progress, len(todo) * n, f"corrupting {len(todo)} entries ({n_workers} proc)")
        clean_file: Path | None = None
        try:
            for key in todo:
                writers[key] = _Writer(self.path(key), (n, *clean.shape[1:]), key)
            if n_workers == 1 or len(todo) * len(spans) == 1:
                for key in todo:
                    for a, b in spans:
                        out = _corrupt_chunk(clean, sample_ids[a:b], a, key.noise, key.level, key.seed)
                        self._write_chunk(writers, key, a, out, bar)
            else:
                clean_file = self._clean_file(clean)
                self._build_parallel(str(clean_file), sample_ids, todo, spans, writers, n_workers, bar)
        except OSError as exc:
            for w in writers.values():
                w.abort()
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise VitbenchError(f"cache directory {self.dir} is full; free space or {_FIX}") from None
            raise VitbenchError(
                f"cannot write cache directory {self.dir} ({exc.strerror or exc}); {_FIX}"
            ) from None
        except BaseException:
            for w in writers.values():
                w.abort()
            raise
        finally:
            if bar is not None:
                bar.close()
            if clean_file is not None:
                clean_file.unlink(missing_ok=True)
        stats.built, stats.images = len(todo), len(todo) * n
        stats.wall_s = time.perf_counter() - start
        return stats

    def _write_chunk(
        self, writers: dict[CacheKey, _Writer], key: CacheKey, a: int, out: np.ndarray, bar: Any
    ) -> None:
        w = writers[key]
        w.write(a, out)
        if w.complete:
            w.commit()
            self._verified.pop(w.path, None)
        if bar is not None:
            bar.update(len(out))

    def _clean_file(self, clean: np.ndarray) -> Path:
        """Write the clean images once for the workers to memmap (removed after the build)."""
        path = self.dir / f"clean-{os.getpid()}-{time.monotonic_ns()}.tmp.npy"
        np.save(path, np.ascontiguousarray(clean))
        return path

    def _build_parallel(
        self,
        clean_file: str,
        ids: np.ndarray,
        todo: list[CacheKey],
        spans: list[tuple[int, int]],
        writers: dict[CacheKey, _Writer],
        n_workers: int,
        bar: Any,
    ) -> None:
        import multiprocessing as mp

        methods = mp.get_all_start_methods()
        ctx = mp.get_context("forkserver" if "forkserver" in methods else "spawn")
        tasks = [(key, a, b) for key in todo for a, b in spans]
        with ProcessPoolExecutor(max_workers=n_workers, mp_context=ctx, initializer=_init_worker) as pool:
            pending: dict[Future[np.ndarray], tuple[CacheKey, int]] = {}
            it = iter(tasks)
            try:
                # bounded in-flight work: a few tasks per worker, so results never pile up in memory
                for key, a, b in _take(it, 4 * n_workers):
                    fut = pool.submit(_corrupt_chunk, clean_file, ids[a:b], a, key.noise, key.level, key.seed)
                    pending[fut] = (key, a)
                while pending:
                    done, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for fut in done:
                        key, a = pending.pop(fut)
                        self._write_chunk(writers, key, a, fut.result(), bar)
                        for nkey, na, nb in _take(it, 1):
                            nfut = pool.submit(
                                _corrupt_chunk, clean_file, ids[na:nb], na, nkey.noise, nkey.level, nkey.seed
                            )
                            pending[nfut] = (nkey, na)
                self._pool_done(pool)
            except BaseException:
                for fut in pending:
                    fut.cancel()
                raise

    def _pool_done(self, pool: ProcessPoolExecutor) -> None:
        """Hook called with the worker pool after its last task, before it shuts down."""

    def get(self, key: CacheKey, clean: np.ndarray, sample_ids: np.ndarray) -> np.ndarray:
        """The entry of ``key``, built first when missing (see :meth:`build` for errors)."""
        found = self.lookup(key)
        if found is not None:
            return found
        self.build(clean, sample_ids, [key])
        found = self.lookup(key)
        if found is None:  # pragma: no cover - build just wrote and verified it
            raise VitbenchError(f"cache entry {key.label()} vanished after building; check {self.dir}")
        return found

    # -- listing ---------------------------------------------------------------------------------
    def entries(self) -> list[Entry]:
        """Every entry with a readable sidecar, sorted by dataset, noise, level, seed."""
        out: list[Entry] = []
        if not self.dir.is_dir():
            return out
        for path in self.dir.glob("*.npy"):
            if path.name.endswith(".tmp.npy"):
                continue
            meta = self._sidecar(path)
            if meta is None:
                continue
            try:
                size = path.stat().st_size + path.with_suffix(".json").stat().st_size
            except OSError:
                continue
            out.append(
                Entry(
                    path.stem,
                    dict(meta.get("key", {})),
                    tuple(meta.get("shape", ())),
                    size,
                    str(meta.get("created", "")),
                )
            )
        return sorted(
            out,
            key=lambda e: (
                str(e.key.get("dataset")),
                str(e.key.get("noise")),
                float(e.key.get("level", 0)),
                int(e.key.get("seed", 0)),
            ),
        )

    def size_bytes(self) -> int:
        """Bytes used by every file under the cache directory."""
        if not self.root.is_dir():
            return 0
        return sum(p.stat().st_size for p in self.root.rglob("*") if p.is_file())

    def clear(self) -> int:
        """Delete every entry (and stale temporary files); return the number of entries removed.

        Raises:
            VitbenchError: the directory cannot be modified.
        """
        n = len(list(self.dir.glob("*.json"))) if self.dir.is_dir() else 0
        if self.dir.is_dir():
            try:
                shutil.rmtree(self.dir)
            except OSError as exc:
                raise VitbenchError(
                    f"cannot clear cache directory {self.dir} ({exc.strerror or exc}); check its permissions"
                ) from None
        self._verified.clear()
        return n


class _Writer:
    """Writes one entry: chunks into a temporary ``.npy`` file, then sidecar and rename."""

    def __init__(self, path: Path, shape: tuple[int, ...], key: CacheKey) -> None:
        self.path, self.shape, self.key = path, shape, key
        self.tmp = path.with_name(f"{path.stem}.{os.getpid()}-{time.monotonic_ns()}.tmp.npy")
        self.row_bytes = int(np.prod(shape[1:]))
        self.remaining = shape[0]
        self.fh = open(self.tmp, "wb")  # noqa: SIM115 - closed in commit/abort
        np.lib.format.write_array_header_1_0(
            self.fh, {"descr": np.dtype(np.uint8).str, "fortran_order": False, "shape": shape}
        )
        self.offset = self.fh.tell()

    @property
    def complete(self) -> bool:
        return self.remaining == 0

    def write(self, start: int, rows: np.ndarray) -> None:
        if rows.dtype != np.uint8 or tuple(rows.shape[1:]) != self.shape[1:]:
            raise VitbenchError(f"noise '{self.key.noise}' returned {rows.dtype} {rows.shape[1:]}, not uint8")
        self.fh.seek(self.offset + start * self.row_bytes)
        self.fh.write(np.ascontiguousarray(rows).data)
        self.remaining -= len(rows)

    def commit(self) -> None:
        self.fh.flush()
        os.fsync(self.fh.fileno())
        self.fh.close()
        meta = {
            "key": self.key.to_dict(),
            "shape": list(self.shape),
            "dtype": "uint8",
            "file_bytes": self.tmp.stat().st_size,
            "sha256": _sha256_file(self.tmp),
            "impl": implementation_versions(),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        # sidecar first: a reader never sees new data without its sidecar (a sidecar without
        # data reads as a missing entry, and a crash in between only costs a rebuild)
        side_tmp = self.tmp.with_suffix(".json")
        side_tmp.write_text(json.dumps(meta, indent=1) + "\n")
        os.replace(side_tmp, self.path.with_suffix(".json"))
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        if not self.fh.closed:
            self.fh.close()
        self.tmp.unlink(missing_ok=True)
        self.tmp.with_suffix(".json").unlink(missing_ok=True)


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 22):
            h.update(block)
    return h.hexdigest()


def _chunk_size(n: int, workers: int) -> int:
    """Samples per task: about 4 tasks per worker per entry, within [8, 256]."""
    if workers <= 1:
        return max(1, min(n, 4 * _MAX_CHUNK))
    return max(_MIN_CHUNK, min(_MAX_CHUNK, math.ceil(n / (4 * workers))))


def _take(it: Iterable[Any], k: int) -> list[Any]:
    out = []
    for item in it:
        out.append(item)
        if len(out) == k:
            break
    return out


def _progress(enabled: bool, total: int, desc: str) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="img", dynamic_ncols=True, leave=False)


def suite_keys(suite: Any) -> list[tuple[dict[str, Any], list[tuple[str, float, int]]]]:
    """(timm data config, noisy conditions) per distinct input preparation of a suite's models.

    The data config comes from the model built with random weights (only its architecture and
    pretrained cfg matter), so no weights are loaded or downloaded.
    """
    conditions = [(n.name, n.level, s) for n in suite.noises if n.name != "clean" for s in suite.seeds]
    out: dict[tuple[Any, ...], tuple[dict[str, Any], list[tuple[str, float, int]]]] = {}
    for spec in suite.models:
        cfg = data_config(create_model(spec.name, "random"))
        out.setdefault((tuple(cfg["input_size"]), prep_rule(cfg)), (cfg, conditions))
    return list(out.values())


def build_suite(suite: Any, cache: CorruptionCache, log: Callable[[str], None] = print) -> BuildStats:
    """Build every (noise, level, seed) of a suite for each of its models' input sizes.

    Noises that cannot corrupt images of a model's input size are skipped with a message
    (their cells fail with the size error when the suite runs).

    Returns:
        The summed build statistics.

    Raises:
        VitbenchError: bad dataset, unwritable or full cache directory.
    """
    d = suite.dataset
    data = load_dataset(d.name, root=d.root, split=d.split, limit=d.limit)
    if len(data) == 0:
        raise VitbenchError(f"dataset '{d.name}' split '{d.split}' is empty; check its root and limit")
    total = BuildStats(workers=cache.workers)
    chash, ids = content_hash(data.images), data.ids_hash()
    for cfg, conditions in suite_keys(suite):
        clean = prepare_images(data.images, cfg)
        h, w = clean.shape[1:3]
        fits = [c for c in conditions if min(h, w) >= NOISES.get(c[0]).min_size]
        for name in sorted({c[0] for c in conditions} - {c[0] for c in fits}):
            log(
                f"skipped '{name}': needs images of at least {NOISES.get(name).min_size}px, these are {h}x{w}"
            )
        keys = [cache_key(data.name, data.split, ids, chash, cfg, n, lv, s) for n, lv, s in fits]
        stats = cache.build(clean, data.sample_ids, keys)
        total.built += stats.built
        total.reused += stats.reused
        total.images += stats.images
        total.wall_s += stats.wall_s
    return total
