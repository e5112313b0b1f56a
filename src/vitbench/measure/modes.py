"""Private helpers shared by the measurement modules."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode for the ``with`` body, then restore every module's flag.

    The flag is restored per submodule, so a model whose parts were in mixed train/eval
    states comes back exactly as it was.

    Args:
        model: any module.

    Yields:
        The same module, in eval mode.
    """
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, flag in flags:
            m.training = flag
