"""The inputs of a cell: the suite's images at the model's input size under the cell's noise.

One :class:`CellInputs` per run loads the dataset split once, prepares clean images once per input
size, and serves noisy images from the corrupted-image cache (built once per condition, in
parallel, the first time a cell needs one) or corrupts them in memory when the cache is off or
cannot be written -- the same images either way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import numpy as np

from vitbench.core.errors import VitbenchError
from vitbench.core.specs import Cell, SuiteSpec
from vitbench.data import FileImageSet, ImageSet, load_dataset
from vitbench.data.cache import CacheKey, CorruptionCache, content_hash, prep_rule, resolve_dir
from vitbench.data.cache import cache_key as corruption_key
from vitbench.data.files import skip_summary
from vitbench.data.noise import NOISES, apply_noise
from vitbench.data.prep import prepare_images


class CellInputs:
    """Images of the suite's dataset for each cell (shared by every method of the sweep).

    Args:
        suite: the validated suite (its dataset and ``cache_dir``).
        main: this is the main process (the only one that writes the cache).
        wait: barrier across processes (``accelerator.wait_for_everyone``), or a no-op.
        processes: number of processes of the run.
        progress: show the cache build's progress.
        log: where one-line messages go.
        cache: the corrupted-image cache; ``None`` opens the one named by the suite key
            ``cache_dir`` / ``$VITBENCH_CACHE`` / ``~/.cache/vitbench`` (``off`` disables it);
            ``False`` disables it.

    Attributes:
        cache: the corrupted-image cache, or ``False`` once disabled (off, unwritable or full: the
            run then warns once and corrupts in memory).
        conditions: the noisy ``(noise, level, seed)`` conditions of the run, built together the
            first time one of them is needed (set by the harness before the sweep).
    """

    def __init__(
        self,
        suite: SuiteSpec,
        *,
        main: bool = True,
        wait: Callable[[], None] = lambda: None,
        processes: int = 1,
        progress: bool = False,
        log: Callable[[str], None] = print,
        cache: CorruptionCache | Literal[False] | None = None,
    ) -> None:
        self.suite = suite
        self.main = main
        self._wait = wait
        self._processes = processes
        self.log = log
        if cache is None:
            root = resolve_dir(suite.cache_dir)
            cache = CorruptionCache(root, progress=progress, log=log) if root else False
        self.cache: CorruptionCache | Literal[False] = cache
        self.conditions: set[tuple[str, float, int]] = set()
        self._data: ImageSet | FileImageSet | None = None
        self._inputs: dict[tuple, np.ndarray] = {}
        self._clean: dict[tuple, np.ndarray] = {}
        self._content_hash: str | None = None
        self._prebuilt: set[tuple] = set()

    def dataset(self) -> ImageSet | FileImageSet:
        """The suite's dataset split (loaded once; folder datasets are decoded on demand).

        Raises:
            VitbenchError: the split is empty (or the adapter's own one-line errors).
        """
        if self._data is None:
            d = self.suite.dataset
            self._data = load_dataset(
                d.name, root=d.root, split=d.split, limit=d.limit, class_order=d.class_order
            )
            if len(self._data) == 0:
                raise VitbenchError(
                    f"dataset '{d.name}' split '{d.split}' is empty; check its root and limit"
                )
            if isinstance(self._data, FileImageSet) and (line := skip_summary(self._data)):
                self.log(line)
        return self._data

    def images(self, cell: Cell, cfg: dict[str, Any]) -> np.ndarray:
        """uint8 [N, h, w, 3] of the dataset at the model's input size with the cell's noise.

        Clean images are prepared in memory; noisy ones come from the corruption cache (a
        memory-mapped entry shared by every method of the sweep), or are corrupted in memory
        when the cache is off or cannot be written. Folder datasets return their samples (decoded,
        resized and corrupted in DataLoader workers) instead of an array.
        """
        data = self.dataset()
        if isinstance(data, FileImageSet):
            return data.samples(cfg, cell.noise.name, cell.noise.level, cell.seed)  # type: ignore[return-value]
        prep = (tuple(cfg["input_size"]), prep_rule(cfg))
        if prep not in self._clean:
            if len(self._clean) >= 2:
                self._clean.clear()
            self._clean[prep] = prepare_images(data.images, cfg)
        clean = self._clean[prep]
        noise = cell.noise
        if noise.name == "clean":
            return clean
        if self.cache is not False:
            if prep not in self._prebuilt:
                self._prebuilt.add(prep)
                self._prebuild(clean, cfg, cell)
            cached = self._from_cache(clean, cfg, noise.name, noise.level, cell.seed)
            if cached is not None:
                return cached
        key = (prep, noise, cell.seed)
        if key not in self._inputs:
            if len(self._inputs) > 8:
                self._inputs.clear()
            self._inputs[key] = apply_noise(clean, data.sample_ids, noise.name, noise.level, cell.seed)
        return self._inputs[key]

    def cache_key(self, cfg: dict[str, Any], noise: str, level: float, seed: int) -> CacheKey:
        """Cache key of this run's dataset at the input size of ``cfg`` under (noise, level, seed)."""
        data = self.dataset()
        if self._content_hash is None:
            self._content_hash = content_hash(data.images)
        return corruption_key(
            data.name, data.split, data.ids_hash(), self._content_hash, cfg, noise, level, seed
        )

    def _prebuild(self, clean: np.ndarray, cfg: dict[str, Any], cell: Cell) -> None:
        """Build every noisy (noise, level, seed) of this run for this input size, once, in parallel.

        Only the main process writes; the others wait and then read. Noises that cannot handle
        the image size are left out (their cells fail with the size error).
        """
        conditions = self.conditions or {(cell.noise.name, cell.noise.level, cell.seed)}
        h, w = clean.shape[1:3]
        keys = [
            self.cache_key(cfg, n, lv, sd)
            for n, lv, sd in sorted(conditions)
            if n != "clean" and min(h, w) >= NOISES.get(n).min_size
        ]
        try:
            if self.main and self.cache is not False and keys:
                stats = self.cache.build(clean, self.dataset().sample_ids, keys)
                if stats.built:
                    self.log(
                        f"cache: corrupted {stats.built} entries ({stats.images} images) in "
                        f"{stats.wall_s:.1f} s with {stats.workers} process(es), reused {stats.reused}"
                    )
        except Exception as exc:  # unwritable/full cache, or a noise failing in a worker
            self.log(f"warning: {one_line(exc)}; corrupting images in memory instead")
            self.cache = False  # every process then corrupts (and fails, if it must) the same way
        finally:
            if self._processes > 1:
                self._wait()

    def _from_cache(
        self, clean: np.ndarray, cfg: dict[str, Any], noise: str, level: float, seed: int
    ) -> np.ndarray | None:
        """The cached entry, built now when missing (main process); ``None`` -> in memory."""
        if self.cache is False:
            return None
        key = self.cache_key(cfg, noise, level, seed)
        found = self.cache.lookup(key)
        if found is not None or not self.main:
            return found
        if min(clean.shape[1:3]) < NOISES.get(noise).min_size:
            return None  # the in-memory path raises the size error for this cell
        try:
            return self.cache.get(key, clean, self.dataset().sample_ids)
        except Exception as exc:  # as in _prebuild: the in-memory path gives the same images
            self.log(f"warning: {one_line(exc)}; corrupting images in memory instead")
            self.cache = False
            return None


def one_line(exc: BaseException) -> str:
    """A one-line message: a VitbenchError's own text, otherwise ``Type: message``."""
    text = str(exc) if isinstance(exc, VitbenchError) else f"{type(exc).__name__}: {exc}"
    return " ".join(text.split())
