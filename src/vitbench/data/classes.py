"""The order of class folders: which folder gets which label.

A folder dataset labels its class folders by their position in one order. Three orders exist
(``class_order:`` of a suite's ``dataset`` and of ``vitbench data --class-order``):

* ``natural`` (the default): timm's folder reader (``timm.data.readers.reader_image_folder``
  sorts with ``timm.utils.misc.natural_key``): runs of digits compare as numbers, the rest
  case-insensitively, so ImageNetV2's ``0``, ``1``, ..., ``999`` get labels 0..999.
* ``lexicographic``: Python's string order, torchvision's ``ImageFolder`` rule (``10`` before ``2``).
* a path to a text file of class names, one per line: label ``k`` is the folder on line ``k``
  (0-based; blank lines and ``#`` comments skipped). Every folder must be listed exactly once.

The class list is part of what a cell measures: :func:`class_list_digest` is its stable hash.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from pathlib import Path

from vitbench.core.errors import VitbenchError

#: The named orders; any other value of ``class_order`` is a path to a file of class names.
CLASS_ORDERS = ("natural", "lexicographic")
_DIGITS = re.compile(r"(\d+)")


def natural_key(name: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key of timm's natural order, total and deterministic.

    timm's ``natural_key`` splits the lower-cased name into runs of digits (compared as integers)
    and the text between them (compared as strings); this is the same order, written as
    ``(kind, value)`` pairs. Names equal under it (``A``/``a``, ``01``/``1``) are ordered by the
    name itself (see :func:`order_classes`).
    """
    parts = _DIGITS.split(name.lower())
    return tuple((1, int(p)) if i % 2 else (0, p) for i, p in enumerate(parts))


def check_class_order(value: object, where: str) -> str | None:
    """Validate a ``class_order`` value: ``None``, ``natural``, ``lexicographic`` or an existing file.

    Returns:
        the value as a string (a path keeps its spelling), or ``None`` for the default.

    Raises:
        VitbenchError: not a string, or a path that is not a file (one line with the fix).
    """
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise VitbenchError(
            f"{where}: class_order must be natural, lexicographic or a path to a file of class names, "
            f"got {value!r}"
        )
    if value in CLASS_ORDERS:
        return value
    if not Path(value).expanduser().is_file():
        raise VitbenchError(
            f"{where}: class_order '{value}' is neither natural, lexicographic nor an existing file of "
            "class names (one per line); fix the path or pick a named order"
        )
    return value


def read_class_file(path: str | Path) -> list[str]:
    """Class names of a class-order file, one per line (blank lines and ``#`` comments skipped).

    Raises:
        VitbenchError: unreadable, empty, or a name listed twice.
    """
    p = Path(path).expanduser()
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise VitbenchError(
            f"cannot read class-order file {p} ({exc}); pass a text file of class names"
        ) from None
    names = [s.strip() for s in lines if s.strip() and not s.strip().startswith("#")]
    if not names:
        raise VitbenchError(f"class-order file {p} lists no class names; write one folder name per line")
    seen: set[str] = set()
    for n, name in enumerate(names, 1):
        if name in seen:
            raise VitbenchError(
                f"class-order file {p}: '{name}' is listed twice (entry {n}); list each class once"
            )
        seen.add(name)
    return names


def order_classes(names: Sequence[str], order: str | None = None) -> list[str]:
    """The class folder ``names`` in label order (label = position) under ``order``.

    Args:
        names: folder names, any order.
        order: ``None``/``"natural"``, ``"lexicographic"``, or a path to a class-order file.

    Raises:
        VitbenchError: with a file, a folder the file does not list or a listed class without a
            folder (one line naming one of them).
    """
    if order is None or order == "natural":
        return sorted(names, key=lambda s: (natural_key(s), s))
    if order == "lexicographic":
        return sorted(names)
    listed = read_class_file(order)
    have, wanted = set(names), set(listed)
    missing = [n for n in names if n not in wanted]
    if missing:
        raise VitbenchError(
            f"class-order file {order} does not list class folder '{sorted(missing)[0]}' "
            f"({len(missing)} unlisted); add every folder name to it"
        )
    absent = [n for n in listed if n not in have]
    if absent:
        raise VitbenchError(
            f"class-order file {order} lists '{absent[0]}' but there is no such class folder "
            f"({len(absent)} of {len(listed)} missing); list only the folders present"
        )
    return listed


def class_list_digest(classes: Sequence[str]) -> str:
    """Stable hash of a class list in label order: 16 hex chars of sha256 over its JSON form.

    Two data sets whose folders get the same labels have the same digest; any change of a
    name or of the order changes it. Cell keys include it, so a store never resumes a cell
    measured under another labelling.
    """
    blob = json.dumps([str(c) for c in classes], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def dataset_class_digest(data: object) -> str:
    """:func:`class_list_digest` of a loaded data set's labelling.

    Folder data sets hash their class folders in label order (``FileImageSet.class_folders``:
    which folder got which label); others, and flat folders labelled by a label file, hash
    their ``classes``.
    """
    folders = tuple(getattr(data, "class_folders", ()) or ())
    return class_list_digest(folders or tuple(getattr(data, "classes", ())))
