"""Resolve everything a run needs once, before its first cell: one-line errors instead of per-cell ones.

``vitbench run`` calls :func:`preflight` after opening the store and before the sweep. For the
cells still to run it checks, in this order (cheapest first):

1. every model's weight source: ``demo`` only for the demo model, files that exist, hub weights
   in the local Hugging Face cache or a reachable hub (one probe of at most 3 s, never long
   retries; :func:`vitbench.core.models.hub_weights_file`);
2. the dataset (root, split, not empty) -- loaded once and kept by the harness;
3. per model (built once, kept by the harness for the first cells): its classifier against the
   dataset's classes, every method's native parameters at every keep ratio (``params_for``, and
   the token schedule, e.g. ToMe's ``r`` against the model's tokens), and the trained artifact
   of every DynamicViT/dTPS cell (found by key, named by file, or trained by the suite's
   ``train:``).

Any problem raises :class:`~vitbench.core.errors.VitbenchError` naming it and the fix; no cell has
started and no record is written.
"""

from __future__ import annotations

from typing import Any

from vitbench.core.errors import VitbenchError
from vitbench.core.models import check_weights
from vitbench.core.specs import Cell
from vitbench.harness.trained import artifact_key_of, finetune_command
from vitbench.methods import METHODS
from vitbench.methods.base import TokenMethod
from vitbench.store import artifacts


def preflight(harness: Any, cells: list[Any]) -> None:
    """Check the models, weights, data and artifacts of ``cells`` not yet in ``harness``'s store.

    Args:
        harness: the :class:`vitbench.harness.runner.Harness` about to run ``cells``.
        cells: the run's cells (those already recorded are skipped, as the harness skips them).

    Raises:
        VitbenchError: the first problem found (one line with the fix).
    """
    for spec in dict.fromkeys(c.model for c in cells):  # before digesting their weights
        check_weights(spec.name, spec.weights)
    harness.dataset()
    todo = harness.todo(cells)  # keys hold weights digests, method versions, the label order
    if not todo:
        return
    models = list(dict.fromkeys(c.model for c in todo))
    for spec in models:
        model = harness.model(spec)  # builds it, checks its classes against the dataset
        settings = {repr((c.method, c.keep_ratio)): (c.method, c.keep_ratio) for c in todo if c.model == spec}
        for method, keep in settings.values():  # (params may hold lists: keyed by repr)
            _check_method(harness, spec, model, method, keep)


def _check_method(harness: Any, spec: Any, model: Any, method: Any, keep: float) -> None:
    """Native parameters, token schedule and artifact of one (method, keep ratio) on ``model``."""
    cls: Any = METHODS.get(method.name)
    if cls.supported(model):  # the cells say why (one line each); nothing more to check here
        return
    params = cls.params_for(keep, model, method.overrides)
    if not issubclass(cls, TokenMethod):
        return
    if cls.trainable:
        _check_artifact(harness.suite, spec, cls, method, keep, params)
        return
    cls.schedule(model, params)  # parameters the model cannot realise (ToMe r > mergeable tokens)


def _check_artifact(suite: Any, spec: Any, cls: Any, method: Any, keep: float, params: Any) -> None:
    """The artifact a trainable cell will use exists, or the suite trains it (``train:``)."""
    ref = params.artifact
    if ref == "init":
        return
    if ref:
        artifacts.resolve(ref)
        return
    if suite.train is not None:
        return
    data = suite.train_data()
    key = artifact_key_of(spec, cls.name, params, data)
    if artifacts.find_artifact(key) is None:
        cell = Cell(spec, method, keep, suite.noises[0], suite.selections[0], suite.seeds[0], suite.dataset)
        raise VitbenchError(
            f"no trained artifact for {cls.name} ({cls.setting(params)}) on {spec.name} "
            f"(key {key.digest[:16]}); make it with `{finetune_command(cell, data)}` "
            "or add train: to the suite"
        )


__all__ = ["preflight"]
