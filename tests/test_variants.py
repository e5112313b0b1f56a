"""The model-variant matrix catches what it is for; ToMe's pooled models; dynamic_img_size counts."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
import yaml

import vitbench.core.demo  # noqa: F401  (registers vitbench_demo_vit)
from vitbench.core.errors import VitbenchError
from vitbench.core.models import apply_data_config, dynamic_input, input_grid, input_size, native_input_size
from vitbench.methods import METHODS
from vitbench.methods.mergebase import SizePoolMixin
from vitbench.methods.patching.patch import input_tokens
from vitbench.methods.requirements import UnsupportedModelError
from vitbench.report.paper import cards_dir
from vitbench.testing import run_case
from vitbench.testing.variants import VARIANTS, card_variants, variant_model


def _card_without(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str, change: dict) -> None:
    data = yaml.safe_load((cards_dir() / f"{name}.yaml").read_text())
    (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump({**data, **change}))
    monkeypatch.setattr("vitbench.testing.common.cards_dir", lambda: tmp_path)


def test_a_method_running_a_variant_its_card_does_not_list_fails(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    listed = [v for v in card_variants(METHODS.get("tome")) if v != "gap"]
    _card_without(monkeypatch, tmp_path, "tome", {"variants": listed})
    with pytest.raises(AssertionError, match="runs model variant 'gap' .* does not list it"):
        run_case("tome", "variant", "gap")


def test_a_card_listing_a_refused_variant_fails(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _card_without(monkeypatch, tmp_path, "evit", {"variants": [*card_variants(METHODS.get("evit")), "gap"]})
    with pytest.raises(AssertionError, match="refuses model variant 'gap', which its card lists: evit needs"):
        run_case("evit", "variant", "gap")


def test_a_card_without_variants_or_with_an_unknown_one_fails(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _card_without(monkeypatch, tmp_path, "dense", {"variants": ["cls", "gapp"]})
    with pytest.raises(AssertionError, match=r"unknown variants \['gapp'\]"):
        run_case("dense", "card", "")
    data = yaml.safe_load((cards_dir() / "dense.yaml").read_text())
    del data["variants"]
    (tmp_path / "dense.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(AssertionError, match="has no 'variants:' list"):
        run_case("dense", "card", "")


@pytest.mark.parametrize("key", ["gap", "cls-gap"])
def test_unweighted_pooling_of_merged_tokens_fails_the_matrix(
    monkeypatch: pytest.MonkeyPatch, key: str
) -> None:
    """ToMe as before version 2 (merged tokens averaged unweighted) is caught on both pooled variants."""
    monkeypatch.setattr(
        SizePoolMixin, "pool", lambda self, x, pool_type=None: super(SizePoolMixin, self).pool(x)
    )
    with pytest.raises(AssertionError, match="not the size-weighted mean"):
        run_case("tome", "variant", key)


@pytest.mark.parametrize(
    ("method", "module"),
    [
        ("tome", "vitbench.methods.tome"),
        ("dynamicvit", "vitbench.methods.predictorbase"),
        ("lfe", "vitbench.methods.lfeblock"),
    ],
)
def test_counts_from_the_native_grid_fail_the_matrix(
    monkeypatch: pytest.MonkeyPatch, method: str, module: str
) -> None:
    """Token counts taken from the native grid of a dynamic_img_size model are caught."""
    native = lambda m: int(m.patch_embed.num_patches) + int(m.num_prefix_tokens)  # noqa: E731
    monkeypatch.setattr(f"{module}.input_tokens", native)
    with pytest.raises((AssertionError, VitbenchError)):
        run_case(method, "variant", "dynamic-48")


def test_tome_pooled_feature_is_the_mean_over_original_patches() -> None:
    """With every token merged from its patches, the size-weighted pool equals the mean of the patch features
    carried along: checked on the sizes (sum = patches) and on a constant-per-patch feature."""
    model = variant_model("gap")
    tome = METHODS.get("tome")
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    seen = {}
    hook = model.fc_norm.register_forward_pre_hook(lambda m, a: seen.__setitem__("pooled", a[0]))
    try:
        with tome.apply(model, tome.params_for(1.0, model, {"r": 4}), "scored") as h, torch.inference_mode():
            feats = model.forward_features(x)
            model.forward_head(feats)
            sizes = h.token_sizes
    finally:
        hook.remove()
    assert sizes is not None and sizes.sum(dim=(1, 2)).tolist() == [16.0] * 3
    want = (feats * sizes).sum(1) / sizes.sum(1)
    torch.testing.assert_close(seen["pooled"], want)
    assert not torch.allclose(seen["pooled"], feats.mean(1))  # the unweighted mean differs


@pytest.mark.parametrize("pool", ["max", "avgmax", "map"])
def test_tome_refuses_pooling_it_cannot_weight_in_one_line(pool: str) -> None:
    model = timm.create_model(
        "vit_tiny_patch16_224",
        pretrained=False,
        img_size=32,
        patch_size=8,
        depth=2,
        embed_dim=32,
        num_heads=2,
        class_token=False,
        global_pool=pool,
    )
    tome = METHODS.get("tome")
    reason = tome.supported(model)
    assert reason is not None and "\n" not in reason
    assert reason.startswith("tome needs class-token pooling (global_pool='token') or global average pooling")
    assert f"(global_pool='{pool}')" in reason and "methods that run on it: dense" in reason
    with pytest.raises(UnsupportedModelError, match="merged tokens are pooled by their sizes"):
        tome.params_for(0.5, model)


def test_dynamic_img_size_is_read_from_the_model() -> None:
    """timm sets ``model.dynamic_img_size``; the input size may then differ from the native one."""
    model = timm.create_model("vitbench_demo_vit", pretrained=False, dynamic_img_size=True)
    assert dynamic_input(model) and not hasattr(model.patch_embed, "dynamic_img_size")
    assert native_input_size(model) == (3, 32, 32) and input_size(model) == (3, 32, 32)
    apply_data_config(model, {"input_size": [3, 64, 48]}, "demo")
    assert input_size(model) == (3, 64, 48) and input_grid(model) == (16, 12)
    assert input_tokens(model) == 16 * 12 + 1
    fixed = timm.create_model("vitbench_demo_vit", pretrained=False)
    with pytest.raises(VitbenchError, match=r"input_size \[3, 64, 64\] does not fit the model"):
        apply_data_config(fixed, {"input_size": [3, 64, 64]}, "demo")
    with pytest.raises(VitbenchError, match="input_size"):
        apply_data_config(model, {"input_size": [1, 64, 64]}, "demo")


@pytest.mark.parametrize("size", [16, 64])
def test_a_forward_on_another_grid_than_the_configured_one_is_refused(size: int) -> None:
    model = timm.create_model("vitbench_demo_vit", pretrained=False, dynamic_img_size=True).eval()
    tome = METHODS.get("tome")
    with (
        tome.apply(model, tome.params_for(0.5, model), "scored"),
        pytest.raises(
            VitbenchError, match=r"'tome' resolved its token counts for 65 tokens .* configure the input size"
        ),
    ):
        model(torch.randn(1, 3, size, size))


def test_every_variant_is_named_in_the_docs() -> None:
    text = (Path(__file__).resolve().parents[1] / "CONTRIBUTING.md").read_text()
    assert all(f"`{key}`" in text for key in VARIANTS)
