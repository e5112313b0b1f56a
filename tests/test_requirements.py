"""Declared method requirements: derived ``supported``, one-line refusals in the harness and the CLI."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import timm
import torch

from vbtest import make_model
from vitbench.cli.main import main
from vitbench.methods import METHODS
from vitbench.methods.requirements import Requirements, UnsupportedModelError, check_pairs, skeleton

GAP = "vit_medium_patch16_gap_256"
REG4 = "vit_medium_patch16_reg4_gap_256"


def test_requirements_are_frozen_and_declared_by_every_method() -> None:
    for name in METHODS.names():
        req = METHODS.get(name).requirements
        assert isinstance(req, Requirements) and req.vit_blocks, name
    with pytest.raises(dataclasses.FrozenInstanceError):
        METHODS.get("evit").requirements.class_token = False  # type: ignore[misc]


def test_skeleton_has_no_weights_and_answers_the_checks() -> None:
    model = skeleton(GAP)
    assert next(model.parameters()).device.type == "meta"
    assert METHODS.get("tome").supported(model) is None
    assert "no class token" in (METHODS.get("evit").supported(model) or "")


def test_class_token_head_needed_by_dynamicvit_not_by_evit() -> None:
    """A model with a class token but average pooling: EViT ranks by the class token, DynamicViT refuses."""
    model = timm.create_model("test_vit", pretrained=False, global_pool="avg")
    assert METHODS.get("evit").supported(model) is None
    for name in ("dynamicvit", "dtps"):
        reason = METHODS.get(name).supported(model)
        assert reason is not None and "\n" not in reason
        assert reason.startswith(f"{name} needs a classifier on the class token (global_pool='token')")
        assert "has global average pooling (global_pool='avg')" in reason


def test_tome_needs_attention_with_attn_mask() -> None:
    """An attention whose forward takes no attn_mask (timm < 1.0.16) is refused before ToMe runs."""

    class NoMask(timm.models.vision_transformer.Attention):
        def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
            return super().forward(x)

    model = make_model("vit")
    model.blocks[2].attn.__class__ = NoMask
    reason = METHODS.get("tome").supported(model)
    assert reason is not None and "needs attention that takes attn_mask (timm >= 1.0.16)" in reason
    assert "block 2 attention of type NoMask" in reason
    assert METHODS.get("evit").supported(model) is None


def test_non_vit_blocks_refused_by_every_method() -> None:
    model = make_model("vit")
    del model.blocks[0].ls1
    for name in METHODS.names():
        reason = METHODS.get(name).supported(model)
        assert reason is not None and "needs timm ViT blocks" in reason and "without ls1" in reason, name


def test_check_pairs_names_the_first_and_counts_the_rest() -> None:
    check_pairs([(GAP, "tome"), (GAP, "dense"), ("deit_tiny_patch16_224", "evit")])
    with pytest.raises(UnsupportedModelError) as err:
        check_pairs([(GAP, "tome"), (GAP, "evit"), (REG4, "lfe"), (GAP, "evit")])
    text = str(err.value)
    assert text.startswith("evit needs a class token") and "(and 1 more unsupported" in text
    assert "\n" not in text


def test_harness_refuses_before_any_cell(tmp_path: Path) -> None:
    from vitbench.harness.runner import Harness
    from vitbench.harness.suites import expand, suite_from_dict

    suite = suite_from_dict(
        {
            "name": "refuse",
            "models": [{"name": "vitbench_demo_vit", "weights": "demo"}, {"name": REG4, "weights": "random"}],
            "methods": ["dense", "evit"],
            "keep_ratios": [0.5],
            "dataset": {"name": "mnist-demo", "split": "test", "limit": 8},
            "throughput": {"enabled": False},
        }
    )
    results = tmp_path / "r.sqlite"
    harness = Harness(suite, str(results), progress=False, log=lambda _m: None, cache=False)
    with pytest.raises(UnsupportedModelError, match=f"^evit needs a class token .*; {REG4} has 4 register"):
        harness.run(expand(suite))
    assert not results.exists()  # refused before any cell: no store file


@pytest.mark.parametrize(
    ("model", "has"),
    [
        (GAP, f"{GAP} has global average pooling and no class token"),
        (
            REG4,
            f"{REG4} has 4 register tokens, global average pooling and no class token "
            "(token 0 is register 0)",
        ),
    ],
)
def test_cli_flops_refuses_clsless_models(model: str, has: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["flops", "--model", model, "--method", "evit", "--keep", "0.5"]) == 2
    out = capsys.readouterr()
    assert out.out == ""
    (line,) = out.err.strip().splitlines()
    assert line.startswith("error: evit needs a class token") and has in line


def test_cli_finetune_refuses_before_loading_weights(capsys: pytest.CaptureFixture[str]) -> None:
    """Hub weights are unreachable here: the refusal comes first, so no weights are asked for."""
    assert main(["finetune", "--model", GAP, "--method", "dynamicvit", "--weights", "hub"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: dynamicvit needs a class token") and GAP in line
