"""The embedded demo model separates the methods: every demo keep ratio is a different setting.

The demo ViT sees 64 image tokens (32 px digits, 4 px patches), so ToMe's r and EViT's token
counts differ at every keep ratio of the demo suite; with 16 tokens two ratios shared one r.
"""

from __future__ import annotations

import torch

from vitbench.core.models import create_model
from vitbench.harness.suites import load_suite
from vitbench.methods import METHODS


def _demo() -> tuple[torch.nn.Module, tuple[float, ...]]:
    suite = load_suite("demo")
    return create_model("vitbench_demo_vit", "random"), suite.keep_ratios


def test_demo_model_has_64_image_tokens() -> None:
    model, _ = _demo()
    x = torch.zeros(1, 3, 32, 32)
    assert model.patch_embed.num_patches == 64
    assert model.forward_features(x).shape[1] == 65  # 64 patches + CLS


def test_every_demo_keep_ratio_is_a_distinct_tome_r_and_evit_count() -> None:
    model, keeps = _demo()
    assert len(keeps) == 5
    tome, evit = METHODS.get("tome"), METHODS.get("evit")
    rs = [tome.params_for(k, model).r for k in keeps]
    evit_tokens = [tuple(evit.schedule(model, evit.params_for(k, model))) for k in keeps]
    tome_tokens = [tuple(tome.schedule(model, tome.params_for(k, model))) for k in keeps]
    assert len(set(rs)) == len(keeps), dict(zip(keeps, rs))
    assert len(set(evit_tokens)) == len(keeps), dict(zip(keeps, evit_tokens))
    assert len(set(tome_tokens)) == len(keeps)
    # the dense end: keep 1.0 changes nothing; every smaller ratio removes tokens
    dense = tuple(METHODS.get("dense").schedule(model, METHODS.get("dense").params_for(1.0, model)))
    assert rs[0] == 0 and evit_tokens[0] == dense
    assert all(sum(t) < sum(dense) for t in evit_tokens[1:])
