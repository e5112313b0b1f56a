"""Dataset adapters; importing this package registers the built-in ones in :data:`DATASETS`."""

from vitbench.data import arrays as _arrays  # noqa: F401  (registers mnist-demo and cifar10-npz)
from vitbench.data.base import DATASETS, ImageSet, Loader, load_dataset

__all__ = ["DATASETS", "ImageSet", "Loader", "load_dataset"]
