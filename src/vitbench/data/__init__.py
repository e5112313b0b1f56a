"""Dataset adapters; importing this package registers the built-in ones in :data:`DATASETS`."""

from vitbench.data import arrays as _arrays  # noqa: F401  (registers mnist-demo and cifar10-npz)
from vitbench.data import folders as _folders  # noqa: F401  (image-folder, imagenet, imagenet-c)
from vitbench.data import synthetic as _synthetic  # noqa: F401  (cost-only noise images)
from vitbench.data import tv as _tv  # noqa: F401  (cifar10, cifar100 via torchvision)
from vitbench.data.base import DATASETS, ImageSet, Loader, load_dataset
from vitbench.data.files import FileImageSet, default_workers

__all__ = ["DATASETS", "FileImageSet", "ImageSet", "Loader", "default_workers", "load_dataset"]
