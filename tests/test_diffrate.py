"""DiffRate against a re-derivation of the official inference (OpenGVLab/DiffRate @ 91ae3e3).

The reference below re-derives, from the official ``DiffRate/patch/deit.py``
(``DiffRateBlock.forward`` and ``DiffRateAttention.forward`` in eval mode) and
``DiffRate/merge.py`` (``get_merge_func``), a whole forward of a timm ViT written out step by
step: unfused attention with ``log(size)`` added to the logits, ``attn[:, :, 0, 1:].mean(1)``
sorted descending behind the class token, the ``x[:, :prune]`` slice, the merge of tokens
``merge..`` into their most similar token among the first ``merge`` (class column ``-inf``),
``scatter_reduce`` mean of the tokens, sizes scaled by the similarity and summed, sources merged
with ``amax`` (``trace_source``). It shares no code with :mod:`vitbench.methods.diffrate`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import timm
import torch
import yaml

from vbtest import model_input
from vitbench.cli.main import main
from vitbench.core.demo import load_demo_model
from vitbench.core.errors import VitbenchError
from vitbench.measure import count_gmacs
from vitbench.methods import METHODS
from vitbench.methods import diffrate as dr
from vitbench.store import artifacts
from vitbench.store.results import load_results

DIFFRATE = METHODS.get("diffrate")

# -- the reference (official semantics, re-derived) -------------------------------------------


def _ref_merge(metric: torch.Tensor, kept: int) -> tuple[Any, torch.Tensor, torch.Tensor]:
    """``get_merge_func(metric, kept_number)`` with a class token: (merge(x, mode), node_max, node_idx)."""
    metric = metric / metric.norm(dim=-1, keepdim=True)
    unimportant, important = metric[:, kept:], metric[:, :kept]
    n_src = unimportant.shape[1]
    similarity = unimportant @ important.transpose(-1, -2)
    similarity[..., :, 0] = -math.inf
    node_max, node_idx = similarity.max(dim=-1)
    dst_idx = node_idx[..., None]

    def merge(x: torch.Tensor, mode: str) -> torch.Tensor:
        src, dst = x[:, kept:], x[:, :kept]
        return dst.scatter_reduce(-2, dst_idx.expand(x.shape[0], n_src, x.shape[-1]), src, reduce=mode)

    return merge, node_max, node_idx


def _ref_forward(
    model: Any, x: torch.Tensor, prune: list[int], merge: list[int]
) -> tuple[torch.Tensor, list[int], list[torch.Tensor]]:
    """Logits, tokens entering each block, and the source matrix [B, N_out, N0] after each block."""
    h = model.norm_pre(model.patch_drop(model._pos_embed(model.patch_embed(x))))
    b, n0, _ = h.shape
    size = torch.ones(b, n0, 1)
    source = torch.eye(n0)[None].expand(b, n0, n0)
    counts, sources = [], []
    for i, blk in enumerate(model.blocks):
        counts.append(h.shape[1])
        y = blk.norm1(h)
        _, n, c = y.shape
        heads = blk.attn.num_heads
        q, k, v = blk.attn.qkv(y).reshape(b, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
        attn = (q @ k.transpose(-2, -1)) * blk.attn.scale
        attn = (attn + size.log()[:, None, None, :, 0]).softmax(dim=-1)
        h = h + blk.attn.proj((attn @ v).transpose(1, 2).reshape(b, n, c))
        _, idx = torch.sort(attn[:, :, 0, 1:].mean(dim=1), descending=True)
        idx = torch.cat((torch.zeros((b, 1), dtype=torch.long), idx + 1), dim=1)
        h = torch.gather(h, 1, idx[..., None].expand(-1, -1, c))
        size = torch.gather(size, 1, idx[..., None])
        source = torch.gather(source, 1, idx[..., None].expand(-1, -1, n0))
        h, size, source = h[:, : prune[i]], size[:, : prune[i]], source[:, : prune[i]]
        if merge[i] < prune[i]:
            fn, node_max, _ = _ref_merge(h, merge[i])
            h = fn(h, "mean")
            size = torch.cat((size[:, : merge[i]], size[:, merge[i] :] * node_max[..., None]), dim=1)
            size = fn(size, "sum")
            source = fn(source, "amax")
        h = h + blk.mlp(blk.norm2(h))
        sources.append(source)
    return model.forward_head(model.norm(h)), counts, sources


# -- vitbench, instrumented --------------------------------------------------------------------


def _vitbench(
    model: Any, x: torch.Tensor, params: Any, monkeypatch: pytest.MonkeyPatch, selection: str = "scored"
) -> tuple[torch.Tensor, list[int], list[torch.Tensor]]:
    """vitbench's logits, counted tokens and source matrices rebuilt from its recorded plans."""
    events: list[torch.Tensor] = []
    real_order, real_match = dr.prune_order, dr.match

    def order_spy(*args: Any, **kwargs: Any) -> Any:
        events.append(real_order(*args, **kwargs))
        return events[-1]

    def match_spy(*args: Any, **kwargs: Any) -> Any:
        out = real_match(*args, **kwargs)
        events.append(out[1])
        return out

    monkeypatch.setattr(dr, "prune_order", order_spy)
    monkeypatch.setattr(dr, "match", match_spy)
    with torch.inference_mode(), DIFFRATE.apply(model, params, selection) as handle:
        logits = model(x)
        counts = handle.tokens_per_block
    monkeypatch.undo()
    prune, merge = dr.resolve_counts(model, params)
    b, n0 = x.shape[0], counts[0]
    source = torch.eye(n0)[None].expand(b, n0, n0)
    sources = []
    for i, n in enumerate(counts):
        keep_p, keep_m = dr.block_counts(n, prune[i], merge[i])
        if keep_m < n:
            idx = events.pop(0)
            source = source.gather(1, idx[..., None].expand(-1, -1, n0))
            if keep_m < keep_p:
                node_idx = events.pop(0)[..., None].expand(-1, -1, n0)
                source = source[:, :keep_m].scatter_reduce(1, node_idx, source[:, keep_m:], reduce="amax")
        sources.append(source)
    assert not events
    return logits, counts, sources


def _deit_s_tiny() -> Any:
    """DeiT-S (width 384, 6 heads, 12 blocks) at 112x112: 49 image tokens; sharpened random qkv."""
    torch.manual_seed(0)
    model = timm.create_model("deit_small_patch16_224", pretrained=False, img_size=112).eval()
    with torch.no_grad():
        for blk in model.blocks:
            blk.attn.qkv.weight.mul_(4.0)
    return model


def _scaled(counts: list[int], patches: int) -> list[int]:
    """Published DeiT-S counts (196 patches) scaled to ``patches`` image tokens, class token kept."""
    return [1 + max(2, round((c - 1) * patches / 196)) for c in counts]


#: DeiT-S 2.9 (compression_rate.json) scaled to 49 patches, and a hand-made schedule whose block 3
#: prunes to more tokens than enter it and merges between (the official min() semantics)
_S29 = (
    "2.9",
    [197, 196, 190, 168, 150, 139, 129, 117, 99, 78, 58, 3],
    [197, 194, 176, 156, 141, 133, 121, 107, 88, 64, 56, 3],
)
_HAND = ([50, 46, 40, 44, 30, 30, 26, 20, 18, 14, 9, 6], [50, 44, 38, 41, 30, 27, 22, 20, 15, 11, 8, 4])


def _cases(which: str) -> list[tuple[list[int], list[int]]]:
    if which == "deit-s":
        return [(_scaled(_S29[1], 49), _scaled(_S29[2], 49)), (list(_HAND[0]), list(_HAND[1]))]
    # demo: 8 blocks, 64 patches
    return [([65, 60, 52, 44, 36, 30, 24, 20], [65, 56, 48, 40, 33, 26, 21, 12])]


def _groups(source: torch.Tensor) -> torch.Tensor:
    """Source rows [B, N, N0] in a canonical order (by each group's first original token).

    The official block also sorts the tokens of a block that keeps them all, which only
    reorders them; the groups (which original tokens each token holds) are what must agree.
    """
    first = (source > 0).float().argmax(dim=-1)
    return source.gather(1, first.argsort(dim=-1)[..., None].expand(-1, -1, source.shape[-1]))


def _check(model: Any, prune: list[int], merge: list[int], monkeypatch: pytest.MonkeyPatch) -> float:
    params = DIFFRATE.params_for(1.0, model, {"prune": prune, "merge": merge})
    x = model_input(model, batch=3, seed=1)
    with torch.inference_mode():
        ref, ref_counts, ref_sources = _ref_forward(model, x, prune, merge)
    got, counts, sources = _vitbench(model, x, params, monkeypatch)
    assert counts == ref_counts == DIFFRATE.schedule(model, params)
    assert counts[-1] < counts[0]
    for i, (ours, theirs) in enumerate(zip(sources, ref_sources, strict=True)):
        assert torch.equal(_groups(ours), _groups(theirs)), f"block {i}: other kept or merged tokens"
    return (got - ref).abs().max().item()


@pytest.mark.parametrize("which", ["deit-s", "demo"])
def test_diffrate_equals_the_official_inference(which: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Logits within 1e-5, identical token counts per block, identical kept/merged sets per block."""
    model = _deit_s_tiny() if which == "deit-s" else load_demo_model()
    for prune, merge in _cases(which):
        assert _check(model, prune, merge, monkeypatch) <= 1e-5


@pytest.mark.slow
def test_diffrate_equals_the_official_inference_on_full_deit_s(monkeypatch: pytest.MonkeyPatch) -> None:
    """DeiT-S at 224x224, random weights, the published 2.9 GMACs rates (compression_rate.json)."""
    torch.manual_seed(0)
    model = timm.create_model("deit_small_patch16_224", pretrained=False).eval()
    params = DIFFRATE.params_for(1.0, model, {"target": "2.9"})
    assert dr.resolve_counts(model, params) == (tuple(_S29[1]), tuple(_S29[2]))
    x = model_input(model, batch=2, seed=1)
    with torch.inference_mode():
        ref, ref_counts, ref_sources = _ref_forward(model, x, _S29[1], _S29[2])
    got, counts, sources = _vitbench(model, x, params, monkeypatch)
    assert counts == ref_counts == [197, 197, 194, 176, 156, 141, 133, 121, 107, 88, 64, 56]
    for ours, theirs in zip(sources, ref_sources, strict=True):
        assert torch.equal(_groups(ours), _groups(theirs))
    assert (got - ref).abs().max().item() <= 1e-5


def test_diffrate_published_rates_and_keep_ratio_mapping() -> None:
    """The card's rates are the official ones; keep ratios map to the nearest published GMACs."""
    table = dr.published_rates()
    assert set(table) == {"deit_tiny_patch16_224", "deit_small_patch16_224", "deit_base_patch16_224"}
    assert table["deit_small_patch16_224"]["2.9"] == (tuple(_S29[1]), tuple(_S29[2]))
    model = timm.create_model("deit_small_patch16_224", pretrained=False)
    assert DIFFRATE.map_keep_ratio(1.0, model)["target"] == "none"
    assert DIFFRATE.map_keep_ratio(0.7, model) == {"target": "3.1"}
    assert DIFFRATE.map_keep_ratio(0.5, model) == {"target": "2.3"}
    params = DIFFRATE.params_for(0.7, model)
    assert DIFFRATE.setting(params) == "target=3.1"
    with DIFFRATE.apply(model, params):
        assert round(count_gmacs(model), 1) == 3.1


def test_diffrate_random_selection_keeps_counts() -> None:
    """Random selection: the scored counts, seeded, and other tokens than the scored ones."""
    model = _deit_s_tiny()
    prune, merge = _cases("deit-s")[0]
    params = DIFFRATE.params_for(1.0, model, {"prune": prune, "merge": merge})
    x = model_input(model, batch=2, seed=2)
    outs = {}
    for sel, seed in (("scored", 0), ("random", 0), ("random", 1)):
        with torch.inference_mode(), DIFFRATE.apply(model, params, sel, seed) as h:
            outs[sel, seed] = (model(x), h.tokens_per_block)
            assert h.token_sizes is None  # similarity-weighted sizes are not patch counts
    assert outs["scored", 0][1] == outs["random", 0][1] == outs["random", 1][1]
    assert not torch.allclose(outs["scored", 0][0], outs["random", 0][0])
    assert not torch.allclose(outs["random", 0][0], outs["random", 1][0])
    with torch.inference_mode(), DIFFRATE.apply(model, params, "random", 0):
        assert torch.equal(model(x), outs["random", 0][0])


def test_diffrate_constant_rates() -> None:
    """prune_rate/merge_rate: block 0 whole, then floor(alpha n) pruned and merged per block."""
    assert dr.rate_counts(17, 1, 4, 0.1, 0.25) == ((17, 16, 12, 10), (17, 13, 10, 8))
    model = load_demo_model()
    params = DIFFRATE.params_for(0.5, model, {"prune_rate": 0.1, "merge_rate": 0.25})
    assert DIFFRATE.schedule(model, params) == [65, 65, 49, 37, 28, 22, 17, 13]


def test_diffrate_without_rates_names_the_search() -> None:
    """Models without published rates: keep < 1 maps to a GMACs target and names the search."""
    model = load_demo_model()
    params = DIFFRATE.params_for(0.7, model)
    assert params.artifact == "" and float(params.target) > 0
    with pytest.raises(VitbenchError, match="no rates for .*vitbench finetune --method diffrate") as info:
        DIFFRATE.schedule(model, params)
    assert "\n" not in str(info.value)
    assert DIFFRATE.params_for(1.0, model).artifact == "init"
    untrained = DIFFRATE.params_for(0.7, model, {"artifact": "init"})
    assert DIFFRATE.setting(untrained) == f"target={params.target}, untrained"
    assert DIFFRATE.schedule(model, DIFFRATE.params_for(1.0, model)) == [65] * 8
    for bad, words in (
        ({"prune": [65, 60], "merge": [65, 50]}, "2 entries"),
        ({"prune": [65] * 8, "merge": [65] * 7 + [1]}, "no image token"),
        ({"target": "2.9"}, "no rates for"),
        ({"prune_rate": 0.5, "merge_rate": 0.2}, "prune_rate <= merge_rate"),
    ):
        with pytest.raises(VitbenchError, match=words):
            DIFFRATE.schedule(model, DIFFRATE.params_for(1.0, model, bad))
    deit = timm.create_model("deit_small_patch16_224", pretrained=False)
    assert DIFFRATE.params_for(0.7, deit).artifact == "init"  # published: no artifact looked up
    with pytest.raises(VitbenchError, match="use one of 2.3"):
        DIFFRATE.schedule(deit, DIFFRATE.params_for(1.0, deit, {"target": "3.0"}))


# -- the rate search (vitbench finetune --method diffrate) -----------------------------------------


def test_diffrate_search_gradients_reach_the_rates() -> None:
    """The training forward (masks, nothing dropped) sends CE and GFLOPs gradients to every block's logits."""
    model = load_demo_model()
    params = DIFFRATE.params_for(0.5, model, {"artifact": "init"})
    x = model_input(model, batch=2, seed=3)
    with DIFFRATE.apply(model, params) as handle:
        model.train()
        try:
            logits = model(x)
            assert handle.tokens_per_block == [65] * 8  # masked, not dropped
            aux = DIFFRATE.aux_losses(handle, logits, logits)
            (torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1])) + aux["ratio"]).backward()
        finally:
            model.eval()
        parts = [blk.vb_part for blk in model.blocks[1:]]
        assert all(p.prune.logits.grad is not None and p.prune.logits.grad.abs().sum() > 0 for p in parts)
        assert all(p.merge.logits.grad is not None for p in parts)
        assert 0 < float(aux["gflops"]) < 0.02
    model.zero_grad(set_to_none=True)
    assert not any(hasattr(blk, "vb_part") for blk in model.blocks)


def test_diffrate_search_stores_rates_and_a_cell_reuses_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A suite cell without rates names the finetune command; with train: it searches, stores, reuses."""
    monkeypatch.setenv(artifacts.ENV_DIR, str(tmp_path / "artifacts"))
    suite: dict[str, Any] = {
        "name": "diffrate-tiny",
        "dataset": {"name": "mnist-demo", "split": "test", "limit": 8},
        "models": [{"name": "vitbench_demo_vit", "weights": "random"}],
        "methods": ["diffrate"],
        "keep_ratios": [0.5],
        "batch_size": 8,
        "bootstrap": 10,
        "throughput": False,
    }
    path, results = tmp_path / "s.yaml", str(tmp_path / "r.sqlite")
    path.write_text(yaml.safe_dump(suite))
    assert main(["run", str(path), "--results", results, "--no-progress"]) == 2
    assert "vitbench finetune --model vitbench_demo_vit --weights random --method diffrate --keep 0.5" in (
        capsys.readouterr().err
    )
    path.write_text(yaml.safe_dump({**suite, "train": {"max_steps": 2, "batch_size": 4}}))
    assert main(["run", str(path), "--results", results, "--no-progress"]) == 0
    stored = list((tmp_path / "artifacts").glob("diffrate-vitbench_demo_vit-*.safetensors"))
    assert len(stored) == 1
    tensors, meta = artifacts.load(stored[0])
    assert meta["method"] == "diffrate" and not any(k.startswith("backbone.") for k in tensors)
    assert any(tensors[f"part.{s}.prune.logits"].abs().sum() > 0 for s in range(7))  # the search moved
    df = load_results(results)
    row = df.loc[(df["method"] == "diffrate") & df["error"].isna()].iloc[0]
    assert json.loads(row["params_json"])["artifact"] == stored[0].name
    tokens = row["tokens_per_block"]
    tokens = json.loads(tokens) if isinstance(tokens, str) else tokens
    counts = [tensors[f"part.{s}.counts"].tolist() for s in range(7)]
    prune, merge = (65, *(c[0] for c in counts)), (65, *(c[1] for c in counts))
    assert tokens == dr.diffrate_schedule(65, prune, merge)[0] and tokens[-1] < 65


# -- the search's training forward against the official training branch, re-derived ---------------


def _ref_kept(logits: torch.Tensor, cands: torch.Tensor) -> torch.Tensor:
    """``DiffRate.update_kept_token_number``: ceil(cands . softmax) + 1, straight-through ceil."""
    e = cands @ logits.softmax(dim=-1)
    return e + (torch.ceil(e) - e).detach() + 1


def _ref_mask(logits: torch.Tensor, cands: torch.Tensor, kept: int, upto: int, n0: int) -> torch.Tensor:
    """``DiffRate.get_token_mask(upto)`` with the official loop of ``get_token_probability``."""
    prob = logits.softmax(dim=-1)
    tp = torch.zeros(n0)
    for c, pr in zip(cands, prob, strict=True):
        tp = tp + torch.cat([pr.expand(int(c + 1)), torch.zeros(n0 - int(c + 1))])
    mask = torch.ones(n0)
    mask[kept:upto] = 0
    return mask - tp.detach() + tp


def _ref_train_forward(model: Any, x: torch.Tensor, target: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Official training forward (masks) and ``loss_flops``; block 0 keeps everything."""
    h = model.norm_pre(model.patch_drop(model._pos_embed(model.patch_embed(x))))
    b, n0, c = h.shape
    size, mask = torch.ones(b, n0, 1), torch.ones(b, n0)
    n = torch.tensor(float(n0))
    flops = torch.tensor(float(n0 * c * 16 * 3 + c * model.num_classes))  # demo: 4x4 patches, 3 channels
    for i, blk in enumerate(model.blocks):
        y = blk.norm1(h)
        heads = blk.attn.num_heads
        q, k, v = blk.attn.qkv(y).reshape(b, n0, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
        attn = (q @ k.transpose(-2, -1)) * blk.attn.scale + size.log()[:, None, None, :, 0]
        pol = mask.reshape(b, 1, 1, n0)
        pol = pol + (1.0 - pol) * torch.eye(n0).view(1, 1, n0, n0)
        attn = (attn - attn.max(dim=-1, keepdim=True)[0]).exp() * pol
        attn = (attn + 1e-6 / n0) / (attn.sum(dim=-1, keepdim=True) + 1e-6)
        h = h + blk.attn.proj((attn @ v).transpose(1, 2).reshape(b, n0, c))
        flops = flops + 4 * n * c * c + 2 * n * n * c
        if i > 0:
            part = blk.vb_part
            _, idx = torch.sort(attn[:, :, 0, 1:].mean(dim=1), descending=True)
            idx = torch.cat((torch.zeros((b, 1), dtype=torch.long), idx + 1), dim=1)
            h = torch.gather(h, 1, idx[..., None].expand(-1, -1, c))
            size, mask = torch.gather(size, 1, idx[..., None]), torch.gather(mask, 1, idx)
            last = int(mask[0].sum().int())
            pk = _ref_kept(part.prune.logits, part.prune.candidates)
            if pk < last:
                mask = mask * _ref_mask(part.prune.logits, part.prune.candidates, int(pk), last, n0).expand(
                    b, -1
                )
            mid = min(last, int(pk))
            mk = _ref_kept(part.merge.logits, part.merge.candidates)
            if mk < mid:
                merge_mask = _ref_mask(part.merge.logits, part.merge.candidates, int(mk), mid, n0)
                fn, node_max, _ = _ref_merge(h[:, :mid].detach(), int(mk))
                kept_h = fn(h[:, :mid], "mean")
                src = h[:, int(mk) : mid]
                s = torch.cat(
                    (size[:, : int(mk)], size[:, int(mk) : mid] * node_max[..., None]), dim=1
                ).clamp(1)
                h = torch.cat([kept_h, src, h[:, mid:]], dim=1)
                size = torch.cat([fn(s, "sum"), s[:, int(mk) :], size[:, mid:]], dim=1)
                mask = mask * merge_mask
            n = (
                torch.minimum(torch.minimum(n.detach(), pk.detach()), mk.detach())  # STE_Min: no grad to n
                + (pk - pk.detach())
                + (mk - mk.detach())
            )
        h = h + blk.mlp(blk.norm2(h))
        flops = flops + 8 * n * c * c
    logits = model.forward_head(model.norm(h))
    return logits, (flops / 1e9 - target) ** 2


def test_diffrate_search_forward_equals_the_official_training_branch() -> None:
    """Masked forward, GFLOPs loss and the rates' gradients equal the official training branch."""
    model = load_demo_model()
    params = DIFFRATE.params_for(0.5, model, {"artifact": "init"})
    x, y = model_input(model, batch=2, seed=4), torch.tensor([3, 7])
    gen = torch.Generator().manual_seed(0)
    with DIFFRATE.apply(model, params) as handle:
        for blk in model.blocks[1:]:  # spread the proxies so the counts differ per block
            with torch.no_grad():
                blk.vb_part.prune.logits.copy_(torch.randn(16, generator=gen) * 2)
                blk.vb_part.merge.logits.copy_(torch.randn(16, generator=gen) * 2)
        model.train()
        try:
            ours = model(x)
            aux = DIFFRATE.aux_losses(handle, ours, ours)
            target = float(params.target)
            loss = torch.nn.functional.cross_entropy(ours, y) + 5 * aux["ratio"]
            grads = torch.autograd.grad(
                loss, [p for blk in model.blocks[1:] for p in blk.vb_part.parameters()]
            )
            ref, ref_flops_loss = _ref_train_forward(model, x, target)
            ref_loss = torch.nn.functional.cross_entropy(ref, y) + 5 * ref_flops_loss
            ref_grads = torch.autograd.grad(
                ref_loss, [p for blk in model.blocks[1:] for p in blk.vb_part.parameters()]
            )
        finally:
            model.eval()
    assert (ours - ref).abs().max().item() <= 1e-5
    torch.testing.assert_close(aux["ratio"], ref_flops_loss, rtol=1e-6, atol=1e-12)
    for g, rg in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(g, rg, rtol=1e-4, atol=1e-7)
    assert any(g.abs().sum() > 0 for g in grads)


def test_flops_counts_the_searched_rates_a_suite_uses(capsys: pytest.CaptureFixture[str]) -> None:
    """`vitbench flops` finds the shipped searched rates of the demo model, as a suite cell does."""
    from vitbench.cli.main import main

    assert main(["flops", "--model", "vitbench_demo_vit", "--method", "diffrate", "--keep", "0.7"]) == 0
    out = capsys.readouterr().out
    assert "untrained" not in out and "[65, 65, 44, 43, 43, 43, 42, 42]" in out, out


def test_throughput_times_the_searched_rates_a_suite_uses(capsys: pytest.CaptureFixture[str]) -> None:
    """`vitbench throughput` on the demo model uses its demo weights, so DiffRate runs its searched rates."""
    from vitbench.cli.main import main

    args = ["throughput", "--model", "vitbench_demo_vit", "--method", "diffrate", "--keep", "0.7"]
    assert main([*args, "--batch-size", "2", "--repeats", "1", "--rounds", "1", "--warmup", "0"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("vitbench_demo_vit, demo weights, cpu"), out
    row = next(x for x in out.splitlines() if "| diffrate" in x)
    assert "untrained" not in row and "0.0125" in row, row
