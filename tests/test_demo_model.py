"""The embedded demo ViT: every demo keep ratio is a distinct setting of every token method."""

from __future__ import annotations

import pytest
import timm

import vitbench.demo as demo
from vitbench.config import load_suite
from vitbench.methods.evit import EViT
from vitbench.methods.tome import ToMe


@pytest.fixture(scope="module")
def demo_arch() -> object:
    return timm.create_model(demo.ARCH, pretrained=False)  # the architecture; weights do not matter


def test_demo_model_has_64_image_tokens(demo_arch: object) -> None:
    assert demo_arch.patch_embed.num_patches == 64  # type: ignore[attr-defined]
    assert (demo.IMG_SIZE // demo.PATCH_SIZE) ** 2 == 64


def test_demo_keep_ratios_map_to_distinct_tome_r_and_evit_tokens(demo_arch: object) -> None:
    keeps = load_suite("demo").keep_ratios
    assert keeps == (1.0, 0.9, 0.7, 0.5, 0.3)
    rs = [ToMe.map_keep_ratio(k, demo_arch)["r"] for k in keeps]  # type: ignore[arg-type]
    assert len(set(rs)) == len(keeps), rs
    assert rs[0] == 0 and rs == sorted(rs)
    evit = [EViT.schedule(demo_arch, EViT.params_for(k, demo_arch)) for k in keeps]  # type: ignore[arg-type]
    final = [s[-1] for s in evit]  # tokens entering the last block (fused token included)
    assert len(set(final)) == len(keeps), final
    assert final[0] == 65 and final == sorted(final, reverse=True)
    tome = [ToMe.schedule(demo_arch, ToMe.params_for(k, demo_arch)) for k in keeps]  # type: ignore[arg-type]
    assert len({tuple(s) for s in tome}) == len(keeps)
