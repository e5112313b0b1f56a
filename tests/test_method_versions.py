"""A method whose numbers change must raise its semantics version (``Method.version``).

Cell keys hold each method's version, so stores re-evaluate records of an earlier semantics
instead of resuming or showing them; that works only if the version moves with the numbers. This
test records a fingerprint of every registered method's output (logits on fixed inputs of two tiny
seeded models, at keep 0.5, scored selection) per version in ``method_fingerprints.json``:

* the numbers changed and the version did not: the test fails and says to raise the version;
* the version changed: the test fails until the fingerprint is recorded again with
  ``VITBENCH_RECORD_FINGERPRINTS=1 pytest tests/test_method_versions.py``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import torch

from vitbench.methods import METHODS
from vitbench.methods.base import ChannelMethod, TokenMethod
from vitbench.testing.models import calib_batches, make_model, model_input

FILE = Path(__file__).with_name("method_fingerprints.json")
RECORD = os.environ.get("VITBENCH_RECORD_FINGERPRINTS") == "1"
#: A 12-block class-token model and an average-pooled one without class token.
MODELS = ("depth12", "gap")
KEEP = 0.5
#: Relative tolerance: far below any semantic change, above float noise across releases.
RTOL = 1e-4

_MODELS: dict[str, Any] = {}


def _model(key: str) -> Any:
    if key not in _MODELS:
        _MODELS[key] = make_model(key)
    return _MODELS[key]


def fingerprint(name: str) -> dict[str, list[float]]:
    """Per model: the first 6 logits of 2 images, and sum and L2 norm of all logits (float)."""
    cls: Any = METHODS.get(name)
    out: dict[str, list[float]] = {}
    for key in MODELS:
        model = _model(key)
        if cls.supported(model):
            continue  # refused: nothing to fingerprint
        over = dict(cls.conformance.fast)
        if cls.trainable:
            over["artifact"] = "init"
        torch.manual_seed(0)
        mapped = cls.map_keep_ratio(KEEP, model)
        p = cls.params_for(KEEP, model, {k: v for k, v in over.items() if k not in mapped})
        x = model_input(model)
        if issubclass(cls, TokenMethod):
            with cls.apply(model, p, "scored", 0) as h, torch.inference_mode():
                h.set_sample_ids(None)
                logits = model(x)
        else:
            assert issubclass(cls, ChannelMethod)
            pruned = cls.prune(model, p, calib_batches(model))  # saliencies may need gradients
            handle = cls.token_handle(pruned, p)
            with torch.inference_mode():
                if handle is None:
                    logits = pruned(x)
                else:
                    with handle:
                        logits = pruned(x)
        flat = logits.double().flatten()
        out[key] = [*logits[:, :6].double().flatten().tolist(), float(flat.sum()), float(flat.norm())]
    return out


def _recorded() -> dict[str, Any]:
    return json.loads(FILE.read_text()) if FILE.is_file() else {}


@pytest.mark.parametrize("name", METHODS.names())
def test_numbers_change_only_with_a_new_version(name: str) -> None:
    cls: Any = METHODS.get(name)
    now = fingerprint(name)
    book = _recorded()
    if RECORD:
        book[name] = {"version": int(cls.version), "fingerprint": now}
        FILE.write_text(json.dumps(book, indent=1, sort_keys=True) + "\n")
        return
    how = "VITBENCH_RECORD_FINGERPRINTS=1 pytest tests/test_method_versions.py"
    assert name in book, f"no fingerprint of '{name}' recorded; record it with {how}"
    entry = book[name]
    assert entry["version"] == cls.version, (
        f"'{name}' is now version {cls.version} (fingerprint of version {entry['version']} recorded); "
        f"record it again with {how}"
    )
    assert sorted(entry["fingerprint"]) == sorted(now), f"'{name}' now supports models {sorted(now)}"
    for key, values in now.items():
        same = torch.allclose(
            torch.tensor(values), torch.tensor(entry["fingerprint"][key]), rtol=RTOL, atol=RTOL
        )
        assert same, (
            f"the numbers of '{name}' on the tiny '{key}' model changed while its version stayed "
            f"{cls.version}: raise {cls.__name__}.version (cell keys then re-evaluate "
            f"stored records), then {how}"
        )
