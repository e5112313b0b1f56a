"""timm adapter: names, local checkpoints, the hub with HF_HUB_OFFLINE, class-count checks."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vitbench.core.errors import VitbenchError
from vitbench.core.models import check_classes, create_model, data_config
from vitbench.core.specs import ModelSpec


def _trained_like(name: str) -> torch.nn.Module:
    """A model whose weights differ from the seeded random init (so loading is observable)."""
    model = create_model(name, "random")
    with torch.no_grad():
        g = torch.Generator().manual_seed(1)
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return model


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_checkpoint_round_trip(tmp_path: Path, suffix: str) -> None:
    src = _trained_like("test_vit")
    path = tmp_path / f"w{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(path))
    else:
        torch.save({"model": src.state_dict(), "epoch": 3}, path)  # DeiT-style wrapper dict
    loaded = create_model("test_vit", str(path))
    x = torch.randn(2, 3, 160, 160, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        assert torch.equal(src(x), loaded(x))
        assert not torch.equal(create_model("test_vit", "random")(x), loaded(x))


def test_checkpoint_wrapped_prefixes(tmp_path: Path) -> None:
    src = _trained_like("test_vit")
    torch.save({f"module.{k}": v for k, v in src.state_dict().items()}, tmp_path / "ddp.pth")
    loaded = create_model("test_vit", str(tmp_path / "ddp.pth"))
    assert torch.equal(loaded.head.weight, src.head.weight)


def test_checkpoint_shape_mismatch(tmp_path: Path) -> None:
    other = create_model("test_vit", "random", num_classes=10)
    torch.save(other.state_dict(), tmp_path / "ten.pth")
    with pytest.raises(
        VitbenchError, match=r"'head.weight' has shape \(10, 64\) but the model expects \(1000, 64\)"
    ):
        create_model("test_vit", str(tmp_path / "ten.pth"))
    torch.save({"a": torch.zeros(1)}, tmp_path / "alien.pth")
    with pytest.raises(VitbenchError, match="does not match the model"):
        create_model("test_vit", str(tmp_path / "alien.pth"))
    with pytest.raises(VitbenchError, match="does not exist"):
        create_model("test_vit", str(tmp_path / "missing.pth"))


def test_hub_offline_gives_one_line_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))  # nothing cached
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(VitbenchError) as err:
        create_model("deit_small_patch16_224.fb_in1k", "hub")
    msg = str(err.value)
    assert "\n" not in msg and "HF_HUB_OFFLINE" in msg and "weights: /path/to/model.safetensors" in msg


def test_hub_offline_uses_local_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the hub offline, weights already in the HF cache load without any network call."""
    import huggingface_hub.constants as hc
    from safetensors.torch import save_file

    cache = tmp_path / "hub"
    snap = cache / "models--timm--test_vit.r160_in1k" / "snapshots" / ("0" * 40)
    snap.mkdir(parents=True)
    (cache / "models--timm--test_vit.r160_in1k" / "refs").mkdir()
    (cache / "models--timm--test_vit.r160_in1k" / "refs" / "main").write_text("0" * 40)
    src = _trained_like("test_vit")
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(snap / "model.safetensors"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(cache))
    import timm.models._hub as th

    def no_network(*a: object, **k: object) -> None:
        raise AssertionError("network used")

    monkeypatch.setattr(th, "hf_hub_download", no_network, raising=False)
    loaded = create_model("test_vit.r160_in1k", "hub")
    assert torch.equal(loaded.head.weight, src.head.weight)


@pytest.mark.parametrize(
    "name,prefix",
    [
        ("deit_tiny_distilled_patch16_224", 2),  # CLS + distillation token
        ("vit_small_patch14_reg4_dinov2", 5),  # CLS + 4 registers
        ("deit3_small_patch16_224", 1),  # LayerScale
        ("vit_base_patch16_224.augreg_in21k_ft_in1k", 1),
    ],
)
def test_timm_names_and_data_config(name: str, prefix: int) -> None:
    from vitbench.core.models import check_model_name

    check_model_name(name)
    import timm

    model = timm.create_model(name, pretrained=False, depth=1)
    assert model.num_prefix_tokens == prefix
    cfg = data_config(model)
    assert cfg["input_size"][1:] == ((518, 518) if "dinov2" in name else (224, 224))
    assert cfg["interpolation"] in ("bicubic", "bilinear") and len(cfg["mean"]) == 3


def test_unknown_name_and_class_check() -> None:
    with pytest.raises(VitbenchError, match="did you mean 'deit_small_patch16_224'"):
        create_model("deit_smal_patch16_224")
    model = create_model("test_vit", "random")
    check_classes(model, ModelSpec("test_vit", "random"), "cifar10", tuple("abcdefghij"))  # costs only: fine
    with pytest.raises(VitbenchError, match="has 1000 output classes but dataset 'cifar10' has 10"):
        check_classes(model, ModelSpec("test_vit", "/w.pth"), "cifar10", tuple("abcdefghij"))
    with pytest.raises(VitbenchError, match="has 1000 output classes but dataset 'big' has 1001"):
        check_classes(model, ModelSpec("test_vit", "random"), "big", tuple(str(i) for i in range(1001)))
