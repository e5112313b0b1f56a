"""Content digests of model weights: what a cell measured, not what its ``weights:`` entry was called.

A result is identified by the content of the weights it was measured with. The digest of a
model entry (:class:`~vitbench.core.specs.ModelSpec`) is

* ``random``: ``"random"`` -- seeded random initialisation, used for costs only (GMACs, params,
  throughput do not depend on the values);
* ``demo``: the sha256 of the packaged demo weights file (``vitbench/assets/demo_vit.safetensors``);
* a file path: the sha256 of the file's bytes;
* ``hub`` (and ``hf-hub:`` ids): the sha256 of the weights file timm resolved in the local Hugging
  Face cache (a file of that repository revision); when no file can be named (weights fetched from
  a plain URL), the sha256 of the loaded state dict (:func:`state_digest`).

Digests are 16 hex characters of sha256. Hashing a large checkpoint takes about a second per
200 MB, so digests are cached: in memory for the life of the process, and on disk in
``$VITBENCH_CACHE`` (default ``~/.cache/vitbench``; ``off`` disables the disk cache) under
``digests.json``, keyed by the file's resolved path, size, modification time (ns) and inode. A file
rewritten in place gets a new modification time and is hashed again.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from vitbench.core.demo import default_weights_path
from vitbench.core.errors import VitbenchError
from vitbench.core.models import cached_hub_file

#: Characters of the sha256 hex digest kept (64 bits: collisions are not a practical concern).
DIGEST_CHARS = 16
_CHUNK = 1 << 20
_MEMORY: dict[tuple[str, int, int, int], str] = {}
_DISK_NAME = "digests.json"


def _cache_file() -> Path | None:
    """The on-disk digest cache, or ``None`` when ``$VITBENCH_CACHE`` is ``off``."""
    root = os.environ.get("VITBENCH_CACHE", "")
    if root.strip().lower() == "off":
        return None
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "vitbench"
    return base / _DISK_NAME


def _stat_key(path: Path) -> tuple[str, int, int, int]:
    st = path.stat()
    return (str(path.resolve()), int(st.st_size), int(st.st_mtime_ns), int(st.st_ino))


def _read_disk() -> dict[str, str]:
    where = _cache_file()
    if where is None or not where.is_file():
        return {}
    try:
        data = json.loads(where.read_text())
    except (OSError, ValueError):
        return {}  # a damaged cache is only a cache: hash again
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _write_disk(entries: dict[str, str]) -> None:
    """Merge ``entries`` into the disk cache atomically; an unwritable cache is skipped silently."""
    where = _cache_file()
    if where is None:
        return
    try:
        where.parent.mkdir(parents=True, exist_ok=True)
        merged = {**_read_disk(), **entries}
        fd, tmp = tempfile.mkstemp(dir=where.parent, prefix=".digests-", suffix=".json")
        with os.fdopen(fd, "w") as fh:
            json.dump(merged, fh, sort_keys=True)
        os.replace(tmp, where)
    except OSError:
        pass


def file_digest(path: str | Path) -> str:
    """sha256 (first :data:`DIGEST_CHARS` hex characters) of a file's bytes, cached.

    Args:
        path: the file (a checkpoint, the packaged demo weights, a hub cache file).

    Returns:
        16 lowercase hex characters.

    Raises:
        VitbenchError: the file does not exist or cannot be read.
    """
    p = Path(path).expanduser()
    try:
        key = _stat_key(p)
    except OSError as exc:
        raise VitbenchError(f"cannot read weights file {p} ({exc.strerror or exc}); check the path") from None
    if key in _MEMORY:
        return _MEMORY[key]
    disk_key = "|".join(map(str, key))
    found = _read_disk().get(disk_key)
    if found is None:
        h = hashlib.sha256()
        try:
            with p.open("rb") as fh:
                while chunk := fh.read(_CHUNK):
                    h.update(chunk)
        except OSError as exc:
            raise VitbenchError(
                f"cannot read weights file {p} ({exc.strerror or exc}); check its permissions"
            ) from None
        found = h.hexdigest()[:DIGEST_CHARS]
        _write_disk({disk_key: found})
    _MEMORY[key] = found
    return found


def state_digest(state: Any) -> str:
    """sha256 of a state dict's names, dtypes, shapes and values (sorted by name).

    Args:
        state: a ``{name: tensor}`` mapping (``model.state_dict()``).

    Returns:
        16 lowercase hex characters; equal for equal weights whatever file they came from.
    """
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name]
        if not isinstance(t, torch.Tensor):
            continue
        t = t.detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:DIGEST_CHARS]


_HF_HUB = "hf-hub:"


def _cached_hub_weights(name: str) -> str | None:
    """The weights file of ``name`` in the local Hugging Face cache (no network), or ``None``."""
    if name.startswith(_HF_HUB):
        from huggingface_hub import try_to_load_from_cache  # the hub client, only for hub ids

        repo = name[len(_HF_HUB) :]
        for fname in ("model.safetensors", "open_clip_model.safetensors", "pytorch_model.bin"):
            found = try_to_load_from_cache(repo, fname)
            if isinstance(found, str):
                return found
        return None
    return cached_hub_file(name)


def weights_digest(spec: Any, resolve_hub: Callable[[str], str | None] | None = None) -> str | None:
    """Digest of the weights a model entry loads (see the module docstring).

    Args:
        spec: a :class:`~vitbench.core.specs.ModelSpec` (``name``, ``weights``).
        resolve_hub: maps a model name to its weights file in the local hub cache (default
            :func:`vitbench.core.models.cached_hub_file`, which never uses the network).

    Returns:
        The digest, or ``None`` for hub weights not (yet) in the local cache: the harness then
        digests the loaded state dict (:func:`state_digest`) once the model is built.

    Raises:
        VitbenchError: a weights file that cannot be read.
    """
    weights = str(spec.weights)
    if weights == "random":
        return "random"
    if weights == "demo":
        return file_digest(default_weights_path())
    if weights == "hub" or str(spec.name).startswith(_HF_HUB):
        if resolve_hub is None:
            resolve_hub = _cached_hub_weights
        try:
            found = resolve_hub(str(spec.name))
        except Exception:  # noqa: BLE001 - an unknown pretrained tag: digest the loaded weights
            found = None
        return file_digest(found) if found else None
    return file_digest(weights)
