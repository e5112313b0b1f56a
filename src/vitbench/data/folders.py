"""Folder datasets: any ImageFolder, ImageNet-1k (ImageFolder or flat folder + label file), ImageNet-C.

Layouts (see the cards in ``datasets/``):

* ``image-folder``: ``<root>/<split>/<class>/<image>`` or, when there is no ``<split>`` folder,
  ``<root>/<class>/<image>``; classes are the sub-folder names in ``class_order``
  (:mod:`vitbench.data.classes`: natural order by default, as timm's folder reader, so
  ``2`` comes before ``10``; ``lexicographic`` is torchvision's rule; or a file of names).
* ``imagenet``: the same ImageFolder layout with WordNet-id class folders (``n01440764``), or
  exactly 1000 folders of other names (ImageNetV2: ``0`` .. ``999``) labelled in ``class_order``,
  or a flat folder of images plus a label file (:func:`parse_label_file`). Labels index timm's
  sorted 1000 ImageNet-1k synsets (the order every timm/DeiT classifier uses).

Files are listed folder by folder in string order whatever the class order, so sample ids
(positions in that listing) do not depend on the labelling.
* ``imagenet-c``: ``<root>/<corruption>/<severity>/<wnid>/<image>`` read as is; each
  (corruption, severity) folder is the pre-corrupted source of that noise cell.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import os
import re
import warnings
from pathlib import Path

import numpy as np

from vitbench.core.errors import VitbenchError
from vitbench.data.base import DATASETS
from vitbench.data.classes import order_classes
from vitbench.data.files import FileImageSet, build_file_set, check_files, list_images
from vitbench.data.noise import NOISES

IMAGENET_CLASSES = 1000
_WNID = re.compile(r"^n\d{8}$")
#: Label files looked for next to a flat ImageNet folder, in this order.
LABEL_FILES = ("labels.txt", "val.txt", "LOC_val_solution.csv", "val_labels.txt")


@functools.lru_cache(maxsize=1)
def imagenet_synsets() -> tuple[str, ...]:
    """Timm's 1000 ImageNet-1k WordNet ids in classifier order (sorted)."""
    from timm.data import ImageNetInfo

    return tuple(ImageNetInfo().label_names())


def class_folders(folder: Path) -> list[str]:
    """Sorted (string order) names of the sub-folders of ``folder`` (hidden ones excluded)."""
    return sorted(e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith("."))


def _split_folder(root: Path, split: str) -> Path:
    return root / split if (root / split).is_dir() else root


def _list_by_folder(folder: Path, subdirs: list[str], index: dict[str, int]) -> tuple[list[str], list[int]]:
    """``(relative files, labels)``: the images of each of ``subdirs`` in turn, labelled by ``index``."""
    files: list[str] = []
    labels: list[int] = []
    for d in subdirs:
        rel = [os.path.join(d, f) for f in list_images(folder / d)]
        files += rel
        labels += [index[d]] * len(rel)
    return files, labels


def scan_image_folder(folder: Path, class_order: str | None = None) -> tuple[list[str], list[int], list[str]]:
    """``(relative files, labels, classes)`` of an ImageFolder tree (class = first path part).

    ``classes`` are the folder names in label order under ``class_order``
    (:func:`vitbench.data.classes.order_classes`; default natural).
    """
    subdirs = class_folders(folder)
    if not subdirs:
        raise VitbenchError(
            f"{folder} has no class sub-folders; an ImageFolder needs <root>/<class>/<image> "
            "(or use the 'imagenet' dataset with a label file for a flat folder)"
        )
    classes = order_classes(subdirs, class_order)
    files, labels = _list_by_folder(folder, subdirs, {c: k for k, c in enumerate(classes)})
    if not files:
        raise VitbenchError(f"{folder} has {len(classes)} class folders but no image files in them")
    return files, labels, classes


@DATASETS.register(
    "image-folder",
    num_classes=None,
    splits=(),
    needs_root=True,
    class_order=True,
    description="any ImageFolder tree <root>/[<split>/]<class>/<image>; classes: folder names, natural order",
)
def load_image_folder(
    root: str | None, split: str, limit: int | None, class_order: str | None = None
) -> FileImageSet:
    """Load an ImageFolder tree (see module docstring); images decoded on demand."""
    assert root is not None
    folder = _split_folder(Path(root), split)
    files, labels, classes = scan_image_folder(folder, class_order)
    return build_file_set("image-folder", split, folder, files, labels, classes, limit, class_folders=classes)


# -- label files ------------------------------------------------------------------------------------


def parse_label_file(path: Path) -> dict[str, str]:
    """Image name -> label token from a label file.

    Formats: ``LOC_val_solution.csv`` (``ImageId,PredictionString``; the first token of the
    prediction string is the WordNet id), any ``name,label`` CSV, or whitespace-separated
    ``<file> <label>`` lines (Caffe ``val.txt``). Labels are class indices or WordNet ids.
    Names are matched without folder and suffix (``ILSVRC2012_val_00000001``).

    Raises:
        VitbenchError: empty file, malformed line, or a name given twice.
    """
    text = path.read_text(errors="replace").splitlines()
    rows: list[tuple[int, str, str]] = []
    if path.suffix.lower() == ".csv" or (text and "," in text[0]):
        reader = csv.reader(text)
        for n, row in enumerate(reader, 1):
            if not row or not "".join(row).strip():
                continue
            if n == 1 and not _looks_like_label(row[-1].split()[0] if row[-1].split() else ""):
                continue  # header
            if len(row) < 2 or not row[1].split():
                raise VitbenchError(f"{path} line {n}: expected 'name,label', got {','.join(row)!r}")
            rows.append((n, row[0].strip(), row[1].split()[0]))
    else:
        for n, line in enumerate(text, 1):
            parts = line.split()
            if not parts or parts[0].startswith("#"):
                continue
            if len(parts) != 2:
                raise VitbenchError(f"{path} line {n}: expected '<file> <label>', got {line.strip()!r}")
            rows.append((n, parts[0], parts[1]))
    if not rows:
        raise VitbenchError(f"label file {path} has no '<file> <label>' lines")
    out: dict[str, str] = {}
    for n, name, label in rows:
        key = _stem(name)
        if key in out:
            raise VitbenchError(f"{path} line {n}: image '{name}' is listed twice; fix the label file")
        out[key] = label
    return out


def _looks_like_label(tok: str) -> bool:
    return tok.isdigit() or bool(_WNID.match(tok))


def _stem(name: str) -> str:
    base = os.path.basename(name.strip())
    stem, ext = os.path.splitext(base)
    return stem if ext else base


def imagenet_label_index(label: str, where: str) -> int:
    """Class index of a label token: an integer 0..999 or a WordNet id of ImageNet-1k."""
    syn = imagenet_synsets()
    if label.isdigit():
        k = int(label)
        if not 0 <= k < IMAGENET_CLASSES:
            raise VitbenchError(
                f"{where}: label {k} is outside 0..{IMAGENET_CLASSES - 1}; ImageNet-1k has "
                f"{IMAGENET_CLASSES} classes (0-based, sorted WordNet ids)"
            )
        return k
    if label in _synset_index():
        return _synset_index()[label]
    raise VitbenchError(
        f"{where}: label '{label}' is neither a class index nor one of the {len(syn)} ImageNet-1k WordNet ids"
    )


@functools.lru_cache(maxsize=1)
def _synset_index() -> dict[str, int]:
    return {s: i for i, s in enumerate(imagenet_synsets())}


def find_label_file(folder: Path) -> Path | None:
    """The first of :data:`LABEL_FILES` in ``folder`` or its parent."""
    for base in (folder, folder.parent):
        for name in LABEL_FILES:
            if (base / name).is_file():
                return base / name
    return None


def imagenet_labels_for(folder: Path, files: list[str], label_file: Path) -> list[int]:
    """Labels of a flat folder's ``files`` from ``label_file``; every image must be labelled.

    Raises:
        VitbenchError: images without a label, or a label file that names none of the images.
    """
    table = parse_label_file(label_file)
    missing = [f for f in files if _stem(f) not in table]
    if missing:
        raise VitbenchError(
            f"label file {label_file} does not match {folder}: {len(missing)} of {len(files)} images "
            f"have no label (e.g. {missing[0]}); use the label file of this folder"
        )
    extra = len(table) - len(files)
    if extra > 0 and extra == len(table):
        raise VitbenchError(f"label file {label_file} names none of the images in {folder}")
    return [imagenet_label_index(table[_stem(f)], f"{label_file.name} '{_stem(f)}'") for f in files]


def scan_imagenet(
    folder: Path, class_order: str | None = None
) -> tuple[list[str], list[int], tuple[str, ...]]:
    """``(relative files, labels, class folders)`` of an ImageNet split folder.

    ImageFolder: WordNet-id folders take their synset's index (a class-order file may reorder
    them), 1000 folders of other names are labelled in ``class_order`` (default natural, so
    ImageNetV2's ``0`` .. ``999`` get labels 0 .. 999). Class folders are the folder of each of
    the 1000 labels (``""`` where a subset has none); empty for a flat folder with a label file.
    """
    if not folder.is_dir():
        raise VitbenchError(f"ImageNet folder {folder} does not exist; pass --set dataset.root=PATH")
    subdirs = class_folders(folder)
    if subdirs:
        wnids = [d for d in subdirs if _WNID.match(d)]
        by_file = class_order not in (None, "natural", "lexicographic")
        if len(wnids) == len(subdirs) and not by_file:
            unknown = [d for d in wnids if d not in _synset_index()]
            if unknown:
                raise VitbenchError(
                    f"{folder}: class folder '{unknown[0]}' is not an ImageNet-1k WordNet id; "
                    "use the 'image-folder' dataset for other class sets"
                )
            index = {d: _synset_index()[d] for d in wnids}
        elif len(subdirs) == IMAGENET_CLASSES:
            index = {d: k for k, d in enumerate(order_classes(subdirs, class_order))}
        else:
            raise VitbenchError(
                f"{folder} has {len(subdirs)} class folders but ImageNet-1k has {IMAGENET_CLASSES}; "
                "name them by WordNet id (n01440764, ...) or use the 'image-folder' dataset"
            )
        files, labels = _list_by_folder(folder, subdirs, index)
        by_label = [""] * IMAGENET_CLASSES
        for d, k in index.items():
            by_label[k] = d
        return files, labels, tuple(by_label)
    files = list_images(folder)
    if not files:
        raise VitbenchError(f"{folder} holds no images and no class folders; check dataset.root")
    label_file = find_label_file(folder)
    if label_file is None:
        raise VitbenchError(
            f"{folder} is a flat folder of images without a label file; put one of "
            f"{', '.join(LABEL_FILES)} ('<file> <label>' lines) in it or its parent"
        )
    return files, imagenet_labels_for(folder, files, label_file), ()


@DATASETS.register(
    "imagenet",
    num_classes=IMAGENET_CLASSES,
    splits=("val", "train"),
    needs_root=True,
    class_order=True,
    description="ImageNet-1k: <root>/<split>/<wnid>/<image> (or 1000 named folders), or flat + label file",
)
def load_imagenet(
    root: str | None, split: str, limit: int | None, class_order: str | None = None
) -> FileImageSet:
    """Load an ImageNet-1k split; ``root`` is the ImageNet folder or the split folder itself."""
    assert root is not None
    folder = _split_folder(Path(root), split)
    files, labels, folders = scan_imagenet(folder, class_order)
    return build_file_set(
        "imagenet", split, folder, files, labels, imagenet_synsets(), limit, class_folders=folders
    )


# -- ImageNet-C -------------------------------------------------------------------------------------


def scan_imagenet_c(root: Path) -> dict[tuple[str, float], Path]:
    """``(noise registry name, severity) -> folder`` of an ImageNet-C tree.

    Folders whose name is not an ImageNet-C corruption (``clean``, README files, ...) and
    severity folders other than 1-5 are ignored.

    Raises:
        VitbenchError: no ``<corruption>/<severity>`` folder at all.
    """
    found: dict[tuple[str, float], Path] = {}
    for name in class_folders(root):
        key = name.replace("_", "-")
        if key not in NOISES or NOISES.info(key).get("levels") != "severity":
            continue
        for sev in class_folders(root / name):
            if sev in ("1", "2", "3", "4", "5"):
                found[(key, float(sev))] = root / name / sev
    if not found:
        raise VitbenchError(
            f"{root} has no ImageNet-C folders; expected <root>/<corruption>/<severity>/<wnid>/<image> "
            "(e.g. gaussian_noise/3/n01440764/ILSVRC2012_val_00000293.JPEG)"
        )
    return found


@DATASETS.register(
    "imagenet-c",
    num_classes=IMAGENET_CLASSES,
    splits=("val",),
    needs_root=True,
    precorrupted=True,
    description="ImageNet-C files <root>/<corruption>/<severity>/<wnid>/<image>, read as is",
)
def load_imagenet_c(root: str | None, split: str, limit: int | None) -> FileImageSet:
    """Load ImageNet-C; noise cells read their (corruption, severity) folder instead of corrupting.

    Sample ids and labels come from the first corruption folder (or ``<root>/clean`` when it
    exists: link your ImageNet val ImageFolder there to get the clean cells); every other
    folder is matched to them by relative path, so a sample keeps its id across corruptions.
    """
    assert root is not None
    base = Path(root)
    folders = scan_imagenet_c(base)
    clean = base / "clean"
    ref_folder = clean if clean.is_dir() else folders[min(folders)]
    files, labels, by_label = scan_imagenet(ref_folder)
    data = build_file_set(
        "imagenet-c", split, ref_folder, files, labels, imagenet_synsets(), limit, class_folders=by_label
    )
    clean_error = None
    if not clean.is_dir():
        clean_error = (
            f"ImageNet-C at {base} has no clean images; link your ImageNet val ImageFolder as {clean} "
            "or drop 'clean' from the suite's noises"
        )
    variant = functools.lru_cache(maxsize=None)(functools.partial(_variant, data, folders))
    return dataclasses.replace(data, variants=variant, clean_error=clean_error)


def _variant(
    data: FileImageSet, folders: dict[tuple[str, float], Path], noise: str, level: float
) -> FileImageSet | None:
    """``data``'s samples read from the (noise, level) folder, same ids and labels.

    Every file is checked as the clean set's were; unusable ones are left out of this
    corruption's cell (a warning says how many and why; ``n_samples`` of the record shows it).
    """
    folder = folders.get((noise, float(level)))
    if folder is None:
        return None
    missing = [f for f in data.files if not (folder / f).is_file()]
    if missing:
        raise VitbenchError(
            f"ImageNet-C folder {folder} lacks {len(missing)} of the {len(data)} evaluated images "
            f"(e.g. {missing[0]}); the corruption folders must hold the same files"
        )
    results = check_files(folder, data.files)
    keep = np.array([reason is None for reason, _ in results], dtype=bool)
    skipped = tuple((f, r) for f, (r, _) in zip(data.files, results) if r is not None)
    notes = tuple((f, n) for f, (r, n) in zip(data.files, results) if r is None and n)
    if skipped:
        warnings.warn(
            f"ImageNet-C {noise} severity {level:g}: skipped {len(skipped)} unusable file(s) "
            f"(e.g. {skipped[0][0]}: {skipped[0][1]}); this cell evaluates the other {int(keep.sum())}",
            stacklevel=2,
        )
    return dataclasses.replace(
        data,
        root=str(folder),
        files=tuple(f for f, k in zip(data.files, keep) if k),
        labels=data.labels[keep],
        sample_ids=data.sample_ids[keep],
        skipped=skipped,
        notes=notes,
        variants=None,
        clean_error=None,
    )
