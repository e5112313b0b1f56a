"""Trained-part artifacts: safetensors files keyed by (model, weights, method, params, data).

An artifact holds what ``vitbench finetune`` learned for a trainable token method (predictor
weights, optionally the fine-tuned backbone) plus JSON metadata (``"vitbench"`` entry of the
safetensors header): the key, the model shape it fits and the training settings. The file
name carries the key's sha256, so the harness finds an artifact without opening files.

Search order: ``$VITBENCH_ARTIFACTS`` (or ``~/.cache/vitbench/artifacts``), then the artifacts
committed with the package (``vitbench/assets/artifacts``). New artifacts go to the first.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from vitbench.core.demo import default_weights_path
from vitbench.core.errors import VitbenchError

ENV_DIR = "VITBENCH_ARTIFACTS"
FORMAT_VERSION = 1
_META = "vitbench"


def user_dir() -> Path:
    """Writable artifact folder: ``$VITBENCH_ARTIFACTS`` or ``~/.cache/vitbench/artifacts``."""
    env = os.environ.get(ENV_DIR)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "vitbench" / "artifacts"


def package_dir() -> Path:
    """Artifacts committed with vitbench (``vitbench/assets/artifacts``)."""
    return Path(str(resources.files("vitbench") / "assets" / "artifacts"))


def search_dirs() -> list[Path]:
    """Folders searched for artifacts, first match wins."""
    return [user_dir(), package_dir()]


@functools.lru_cache(maxsize=32)
def _file_sha(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def weights_id(weights: str) -> str:
    """Identity of a weight source: ``random``/``hub`` as is, files (and ``demo``) by content hash."""
    if weights in ("random", "hub"):
        return weights
    if weights == "demo":
        path, tag = default_weights_path(), "demo"
    else:
        path, tag = Path(weights).expanduser(), "file"
    if not path.is_file():
        raise VitbenchError(f"weights file {path} does not exist; use weights: random | demo | hub | PATH")
    st = path.stat()
    return f"{tag}:{_file_sha(str(path.resolve()), st.st_size, st.st_mtime_ns)}"


@dataclasses.dataclass(frozen=True)
class ArtifactKey:
    """What a trained artifact depends on.

    Attributes:
        model: timm model name as given (pretrained tag included).
        weights: :func:`weights_id` of the starting weights.
        method: registry key of the method.
        params: JSON of the method's native parameters without ``artifact``.
        data: JSON of the training data (dataset name, split, limit; root and class order of a
            dataset read from a folder).
        arch: JSON of the model entry's ``model_args`` and ``data_config``; empty when it has
            none (and then not part of the digest, so existing artifacts keep their names).
    """

    model: str
    weights: str
    method: str
    params: str
    data: str
    arch: str = ""

    @property
    def digest(self) -> str:
        """sha256 (hex) of the key."""
        ident = dataclasses.asdict(self)
        if not self.arch:
            ident.pop("arch")
        blob = json.dumps(ident, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    @property
    def filename(self) -> str:
        """``<method>-<model arch>-<sha256[:16]>.safetensors``."""
        arch = self.model.split(".")[0]
        return f"{self.method}-{arch}-{self.digest[:16]}.safetensors"


def artifact_key(
    model: str,
    weights: str,
    method: str,
    params: Any,
    data: tuple[str, str, int | None],
    model_args: Any = (),
    data_config: Any = (),
    source: tuple[str | None, str | None] = (None, None),
) -> ArtifactKey:
    """Build the key of an artifact.

    From a model name, weight source, method name, ``Params``, (dataset, split, limit), the
    model entry's ``model_args``/``data_config`` (sorted pairs or dicts) and the training data's
    (root, class_order). A dataset read from a root is keyed by the root's absolute path and its
    class order, so an artifact trained on one folder is never used for another folder given
    under the same dataset name; datasets without a root (the packaged ones) keep their keys.
    """
    values = {k: v for k, v in dataclasses.asdict(params).items() if k != "artifact"}
    name, split, limit = data
    root, class_order = source
    where: dict[str, Any] = {"name": name, "split": split, "limit": limit}
    if root is not None:
        where["root"] = str(Path(root).expanduser().resolve())
        if class_order is not None:
            where["class_order"] = class_order
    arch = {"model_args": dict(model_args), "data_config": dict(data_config)}
    return ArtifactKey(
        model=model,
        weights=weights_id(weights),
        method=method,
        params=json.dumps(values, sort_keys=True, default=list),
        data=json.dumps(where, sort_keys=True),
        arch=json.dumps(arch, sort_keys=True, default=list) if model_args or data_config else "",
    )


def find_artifact(key: ArtifactKey) -> Path | None:
    """Path of the artifact for ``key`` in :func:`search_dirs`, or ``None``."""
    for folder in search_dirs():
        path = folder / key.filename
        if path.is_file():
            return path
    return None


def resolve(ref: str) -> Path:
    """An artifact given as a path, or as a file name in :func:`search_dirs`."""
    path = Path(ref).expanduser()
    if path.is_file():
        return path
    for folder in search_dirs():
        if (folder / ref).is_file():
            return folder / ref
    dirs = ", ".join(str(d) for d in search_dirs())
    raise VitbenchError(f"artifact '{ref}' not found (looked in {dirs}); train it with `vitbench finetune`")


def save(path: Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any], dtype: torch.dtype) -> Path:
    """Write ``tensors`` (floating ones cast to ``dtype``) and ``meta`` atomically to ``path``."""
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    out = {
        k: (v.detach().to("cpu", dtype) if v.is_floating_point() else v.detach().cpu()).contiguous()
        for k, v in tensors.items()
    }
    tmp = path.with_name(path.name + ".tmp")
    save_file(out, str(tmp), metadata={_META: json.dumps({"format": FORMAT_VERSION, **meta}, default=str)})
    os.replace(tmp, path)
    return path


def load(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors (float32) and metadata of an artifact; one-line errors for foreign files."""
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise VitbenchError(f"{path} is not a readable safetensors artifact ({exc})") from None
    if _META not in header:
        raise VitbenchError(f"{path} has no vitbench metadata; it was not written by `vitbench finetune`")
    meta = json.loads(header[_META])
    return {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}, meta


__all__ = [
    "ArtifactKey",
    "artifact_key",
    "find_artifact",
    "load",
    "package_dir",
    "resolve",
    "save",
    "search_dirs",
    "user_dir",
    "weights_id",
]
