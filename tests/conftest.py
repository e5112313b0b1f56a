"""Shared fixtures."""

from __future__ import annotations

import pytest
import torch


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip ``gpu`` tests without CUDA."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True, scope="session")
def _offline_hub() -> object:
    """Tests never touch the network: the Hugging Face hub is offline (local cache only)."""
    patch = pytest.MonkeyPatch()
    patch.setenv("HF_HUB_OFFLINE", "1")
    yield
    patch.undo()


@pytest.fixture(autouse=True, scope="session")
def _isolated_corruption_cache(tmp_path_factory: pytest.TempPathFactory) -> object:
    """Corrupted-image cache in a temporary folder for the whole session, never ~/.cache/vitbench."""
    patch = pytest.MonkeyPatch()
    patch.setenv("VITBENCH_CACHE", str(tmp_path_factory.mktemp("vitbench-cache")))
    yield
    patch.undo()
