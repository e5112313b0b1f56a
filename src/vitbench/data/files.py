"""Image sets read from files: listing checks, robust decoding, timm preprocessing, DataLoader input.

A :class:`FileImageSet` holds paths, labels and sample ids; images are decoded on demand in
DataLoader workers (:class:`FileSamples`), resized and cropped by timm's eval transform of the
model's data config (:func:`vitbench.data.prep.eval_transform`, the one preprocessing path),
optionally corrupted (per-sample seeded, as in memory), and handed
to the harness as uint8 ``[H, W, 3]``. Normalisation stays the harness's business.

Robust loading: every listed file is checked once when the set is built (:func:`check_file`).
Grayscale, palette, 16-bit and CMYK images and files whose content does not match their suffix
(a PNG named ``.JPEG``) are decoded by content and converted to RGB, with a note; empty,
non-image, truncated or undecodable files are skipped with a recorded reason
(``FileImageSet.skipped``), so a sweep never stops on a bad file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from vitbench.core.errors import VitbenchError
from vitbench.data.noise import check_noise
from vitbench.data.prep import eval_transform

if TYPE_CHECKING:
    from vitbench.data.samples import FileSamples

#: File suffixes listed as images (case-insensitive); anything else in a folder is ignored.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".ppm", ".pgm", ".pbm")
#: Environment variable overriding the default number of DataLoader workers.
WORKERS_ENV = "VITBENCH_WORKERS"
#: Environment variable overriding the default number of corruption-cache build processes.
CACHE_WORKERS_ENV = "VITBENCH_CACHE_WORKERS"
_SUFFIX_FORMAT = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".bmp": "BMP", ".webp": "WEBP"}
_CONVERTED = {
    "L": "grayscale",
    "LA": "grayscale",
    "I": "16/32-bit grayscale",
    "I;16": "16-bit grayscale",
    "1": "1-bit",
    "P": "palette",
    "PA": "palette",
    "CMYK": "CMYK",
    "RGBA": "RGBA",
    "YCbCr": "YCbCr",
}


WorkerKind = Literal["loader", "cache"]


@dataclasses.dataclass(frozen=True)
class WorkerRule:
    """How many workers of one kind a process starts by default.

    Attributes:
        env: environment variable that sets the count explicitly.
        minimum: smallest count the variable may give (``loader``: 0 = load in the main process).
        per_process: share the usable cores among the processes of a local launch
            (``$LOCAL_WORLD_SIZE``); ``False`` when only one process starts workers at a time.
        cap: upper bound of the default (not of an explicit count); ``None``: no bound.
    """

    env: str
    minimum: int
    per_process: bool
    cap: int | None


#: The rule of each kind: DataLoader workers of every evaluating process (``loader``) and
#: corruption-cache build processes, started by the main process alone (``cache``).
WORKER_RULES: dict[str, WorkerRule] = {
    "loader": WorkerRule(WORKERS_ENV, minimum=0, per_process=True, cap=16),
    "cache": WorkerRule(CACHE_WORKERS_ENV, minimum=1, per_process=False, cap=None),
}


def usable_cpus() -> int:
    """CPU cores this process may run on (its affinity mask; all cores where there is none)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS / Windows
        return max(1, os.cpu_count() or 1)


def default_workers(kind: WorkerKind = "loader") -> int:
    """Default number of worker processes of ``kind``: one rule, two settings.

    The rule: the kind's environment variable when it is set (an integer >= the kind's
    minimum), else the usable cores (:func:`usable_cpus`), divided among the local processes
    when every process starts its own workers, within [1, cap]. The settings
    (:data:`WORKER_RULES`):

    * ``"loader"``: DataLoader workers that decode image files; ``$VITBENCH_WORKERS`` (0 loads
      in the main process); else usable cores / ``$LOCAL_WORLD_SIZE``, at most 16, since every
      process of an ``accelerate launch`` runs its own loader.
    * ``"cache"``: processes that corrupt images into the corruption cache;
      ``$VITBENCH_CACHE_WORKERS`` (>= 1); else all usable cores, since only the main process
      builds the cache (the others wait).

    Raises:
        VitbenchError: the variable is not an integer or is below the minimum (one line).
    """
    rule = WORKER_RULES[kind]
    env = os.environ.get(rule.env)
    if env:
        try:
            n = int(env)
        except ValueError:
            raise VitbenchError(f"{rule.env}={env!r} is not an integer; set a worker count like 8") from None
        if n < rule.minimum:
            raise VitbenchError(f"{rule.env}={env!r} must be >= {rule.minimum}; set a worker count like 8")
        return n
    cores = usable_cpus()
    if rule.per_process:
        cores //= max(int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1), 1)
    return max(1, min(rule.cap, cores) if rule.cap is not None else cores)


def ids_hash(sample_ids: Sequence[int] | np.ndarray) -> str:
    """16 hex chars of sha256 over int64 little-endian sample ids ``[N]`` (which samples, in order)."""
    ids = np.ascontiguousarray(sample_ids, dtype="<i8")
    return hashlib.sha256(ids.tobytes()).hexdigest()[:16]


def list_images(folder: Path) -> list[str]:
    """Image files under ``folder`` (recursive, sorted), as paths relative to it."""
    out = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames.sort()
        rel = os.path.relpath(dirpath, folder)
        for f in sorted(filenames):
            if f.lower().endswith(IMAGE_SUFFIXES) and not f.startswith("."):
                out.append(f if rel == "." else os.path.join(rel, f))
    return out


def check_file(path: str | Path) -> tuple[str | None, str | None]:
    """Check that ``path`` decodes to an image.

    Cheap in the common case: the header is read, and a JPEG/PNG that ends with its end marker
    is taken as complete; anything else is decoded fully.

    Returns:
        ``(skip_reason, note)``: ``skip_reason`` is ``None`` for a usable file; ``note`` says
        what will be converted (grayscale/CMYK/... to RGB, content/suffix mismatch), or ``None``.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        return f"unreadable ({exc.strerror or type(exc).__name__})", None
    if size == 0:
        return "empty file", None
    try:
        with Image.open(path) as im:
            fmt, mode = im.format, im.mode
            complete = _ends_with_marker(path, fmt, size)
            if not complete:
                im.load()  # raises on truncated / corrupt data
    except UnidentifiedImageError:
        return "not an image (PIL cannot identify the content)", None
    except (OSError, SyntaxError, ValueError) as exc:  # truncated, corrupt, unsupported
        text = " ".join(str(exc).split()) or type(exc).__name__
        return f"cannot be decoded ({'truncated' if 'truncated' in text.lower() else text})", None
    notes = []
    expected = _SUFFIX_FORMAT.get(path.suffix.lower())
    if expected and fmt and fmt != expected and not (expected == "JPEG" and fmt == "MPO"):
        notes.append(f"{fmt} content named {path.suffix}, decoded by content")
    if mode in _CONVERTED:
        notes.append(f"{_CONVERTED[mode]} converted to RGB")
    return None, "; ".join(notes) or None


def _ends_with_marker(path: Path, fmt: str | None, size: int) -> bool:
    """True when a JPEG ends with EOI (``FF D9``, trailing zero padding allowed) or a PNG with IEND."""
    if fmt not in ("JPEG", "MPO", "PNG"):
        return False
    with open(path, "rb") as fh:
        fh.seek(max(0, size - 64))
        tail = fh.read()
    if fmt == "PNG":
        return b"IEND" in tail[-12:]
    return tail.rstrip(b"\x00").endswith(b"\xff\xd9")


def check_files(
    root: Path, rel: Sequence[str], workers: int | None = None
) -> list[tuple[str | None, str | None]]:
    """:func:`check_file` on every ``root / rel[i]``, in parallel threads, in order."""
    n = workers or max(4, 2 * default_workers())
    if len(rel) < 64:
        return [check_file(root / r) for r in rel]
    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(lambda r: check_file(root / r), rel, chunksize=64))


class ImageDecodeError(VitbenchError):
    """A listed file that fails to decode; stays one line when a DataLoader worker re-raises it.

    PyTorch re-raises a worker's exception as ``type(exc)("Caught ... Original Traceback ...")``;
    the constructor keeps only the original one-line text (the traceback's last line).
    """

    def __init__(self, *args: object) -> None:
        text = args[0] if len(args) == 1 else None
        if isinstance(text, str) and text.startswith("Caught ") and "Traceback" in text:
            last = text.strip().splitlines()[-1]
            args = (last.split(": ", 1)[1] if ": " in last else last,)
        super().__init__(*args)


def decode_rgb(path: str | Path) -> Any:
    """Decode ``path`` by content into an RGB ``PIL.Image`` (grayscale, palette, CMYK converted)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            if im.mode in ("I", "I;16", "I;16B", "F"):  # 16/32-bit: scale to 8 bit before RGB
                arr = np.asarray(im, dtype=np.float64)
                hi = 65535.0 if arr.max() > 255 else 255.0
                im8 = Image.fromarray(np.clip(arr / hi * 255.0 + 0.5, 0, 255).astype(np.uint8))
                return im8.convert("RGB")
            return im.convert("RGB")
    except Exception as exc:  # a file that passed the listing check but fails now (changed on disk)
        raise ImageDecodeError(
            f"image {path} failed to decode ({type(exc).__name__}: {' '.join(str(exc).split())}); "
            "remove or replace it and re-run (`vitbench data DATASET --root ...` lists bad files)"
        ) from None


@dataclasses.dataclass(frozen=True)
class FileImageSet:
    """A labelled split of image files (decoded on demand).

    Attributes:
        name: registry key of the dataset.
        split: split name.
        root: folder the ``files`` are relative to.
        files: relative paths of the usable images, length ``N``.
        labels: int64 class indices, shape ``[N]``.
        sample_ids: int64 stable ids (position in the sorted listing of the split), ``[N]``.
        classes: class names in label order.
        skipped: ``(relative path, reason)`` of listed files left out.
        notes: ``(relative path, note)`` of files converted while decoding (grayscale, CMYK, ...).
        variants: for pre-corrupted datasets (ImageNet-C): ``(noise, level) -> FileImageSet``
            of the same samples under that corruption, or ``None`` when not on disk.
        clean_error: when set, clean images are not available and this is the error message.
        class_folders: the class folder of each label, in label order (``""`` for a label
            without a folder, e.g. an ImageNet subset); empty when labels come from a label file.
    """

    name: str
    split: str
    root: str
    files: tuple[str, ...]
    labels: np.ndarray
    sample_ids: np.ndarray
    classes: tuple[str, ...]
    skipped: tuple[tuple[str, str], ...] = ()
    notes: tuple[tuple[str, str], ...] = ()
    variants: Callable[[str, float], FileImageSet | None] | None = dataclasses.field(
        default=None, compare=False
    )
    clean_error: str | None = None
    class_folders: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        n = len(self.files)
        if self.labels.shape != (n,) or self.sample_ids.shape != (n,):
            raise ValueError(
                f"labels {self.labels.shape} and sample_ids {self.sample_ids.shape} must be ({n},)"
            )

    def __len__(self) -> int:
        return len(self.files)

    def path(self, i: int) -> Path:
        """Absolute path of sample ``i``."""
        return Path(self.root) / self.files[i]

    def ids_hash(self) -> str:
        """Short sha256 (16 hex chars) of the sample ids (:func:`ids_hash`, as :class:`ImageSet`)."""
        return ids_hash(self.sample_ids)

    def subset(self, n: int | None) -> FileImageSet:
        """The first ``n`` samples in stored order."""
        if n is None or n >= len(self):
            return self
        keep = set(self.files[:n])
        return dataclasses.replace(
            self,
            files=self.files[:n],
            labels=self.labels[:n],
            sample_ids=self.sample_ids[:n],
            notes=tuple(x for x in self.notes if x[0] in keep),
        )

    @property
    def images(self) -> np.ndarray:
        """All images decoded at their own size, uint8 ``[N, H, W, 3]`` (every file must share one size).

        For in-memory consumers (training, the corruption cache); evaluation streams instead.
        """
        first = None
        out: np.ndarray | None = None
        for i in range(len(self)):
            arr = np.asarray(decode_rgb(self.path(i)))
            if out is None:
                first = self.files[i]
                out = np.empty((len(self), *arr.shape), dtype=np.uint8)
            elif arr.shape != out.shape[1:]:
                raise VitbenchError(
                    f"dataset '{self.name}' has mixed image sizes ({first}: {out.shape[2]}x{out.shape[1]}, "
                    f"{self.files[i]}: {arr.shape[1]}x{arr.shape[0]}); in-memory use needs one size, "
                    "so resize the files first (evaluation resizes them itself)"
                )
            out[i] = arr
        if out is None:
            raise VitbenchError(f"dataset '{self.name}' split '{self.split}' has no images")
        return out

    def samples(
        self, cfg: dict[str, Any], noise: str = "clean", level: float = 0.0, seed: int = 0
    ) -> FileSamples:
        """A torch Dataset of this split at the model's input size under (noise, level, seed).

        Pre-corrupted datasets (ImageNet-C) read the matching corruption folder; others corrupt
        each decoded, cropped image in memory with its own seeded generator.
        """
        source, computed = self, noise
        if self.variants is not None and noise != "clean":
            found = self.variants(noise, float(level))
            if found is None:
                raise VitbenchError(
                    f"dataset '{self.name}' under {self.root} has no folder for '{noise}' level {level:g}; "
                    "it holds pre-corrupted images only for the corruptions and severities on disk"
                )
            source, computed = found, "clean"
        elif noise == "clean" and self.clean_error:
            raise VitbenchError(self.clean_error)
        if computed != "clean":
            check_noise(computed, level)
        # deferred: the torch Dataset; listing and checking files needs no torch
        from vitbench.data.samples import FileSamples

        return FileSamples(
            [str(source.path(i)) for i in range(len(source))],
            source.labels,
            source.sample_ids,
            eval_transform(cfg),
            computed,
            float(level),
            seed,
        )


def build_file_set(
    name: str,
    split: str,
    root: Path,
    files: Sequence[str],
    labels: Sequence[int],
    classes: Sequence[str],
    limit: int | None,
    order_seed: int | None = 0,
    check: bool = True,
    class_folders: Sequence[str] = (),
) -> FileImageSet:
    """Check files, assign sample ids (position in ``files``), apply a seeded order and ``limit``.

    Args:
        name: dataset registry key.
        split: split name.
        root: folder the ``files`` are relative to.
        files: relative paths in a stable (sorted) order; sample id = position here.
        labels: class index per file.
        classes: class names in label order.
        limit: keep this many usable files (after the shuffle), ``None`` for all.
        order_seed: seed of the fixed shuffle that makes every ``limit`` prefix class-balanced in
            expectation (``None`` keeps the listing order).
        check: run :func:`check_file` on the kept files (skips and notes recorded).
        class_folders: the class folder of each label (``FileImageSet.class_folders``).

    Raises:
        VitbenchError: no images at all.
    """
    if not files:
        raise VitbenchError(
            f"no image files ({', '.join(IMAGE_SUFFIXES[:3])}, ...) under {root}; "
            f"check dataset.root and the layout in the '{name}' dataset card"
        )
    ids = np.arange(len(files), dtype=np.int64)
    if order_seed is not None:
        ids = np.random.default_rng(order_seed).permutation(len(files)).astype(np.int64)
    lab = np.asarray(labels, dtype=np.int64)
    skipped: list[tuple[str, str]] = []
    notes: list[tuple[str, str]] = []
    kept: list[int] = []
    want = len(ids) if limit is None else limit
    pos = 0
    while len(kept) < want and pos < len(ids):  # top up past skipped files so limit is honoured
        chunk = ids[pos : pos + max(64, want - len(kept))]
        pos += len(chunk)
        results = check_files(root, [files[i] for i in chunk]) if check else [(None, None)] * len(chunk)
        for i, (reason, note) in zip(chunk, results):
            if reason is not None:
                skipped.append((files[i], reason))
            elif len(kept) < want:
                kept.append(int(i))
                if note:
                    notes.append((files[i], note))
    sel = np.asarray(kept, dtype=np.int64)
    return FileImageSet(
        name=name,
        split=split,
        root=str(root),
        files=tuple(files[i] for i in sel),
        labels=lab[sel] if len(sel) else np.zeros(0, dtype=np.int64),
        sample_ids=sel,
        classes=tuple(classes),
        skipped=tuple(skipped),
        notes=tuple(notes),
        class_folders=tuple(class_folders),
    )


def skip_summary(data: FileImageSet, show: int = 3) -> str | None:
    """One line about skipped/converted files (``None`` when there are none)."""
    parts = []
    if data.skipped:
        eg = "; ".join(f"{f}: {r}" for f, r in data.skipped[:show])
        more = "; ..." if len(data.skipped) > show else ""
        parts.append(f"skipped {len(data.skipped)} unusable file(s) ({eg}{more})")
    if data.notes:
        parts.append(
            f"converted {len(data.notes)} file(s) to RGB (e.g. {data.notes[0][0]}: {data.notes[0][1]})"
        )
    if not parts:
        return None
    return (
        f"dataset '{data.name}' {data.split}: " + ", ".join(parts) + "; `vitbench data check` lists them all"
    )
