"""VTC-LFC frequency filters and LFE token selection against hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vbtest import make_model, model_input
from vitbench.core.errors import VitbenchError
from vitbench.methods import METHODS
from vitbench.methods.lfeblock import attention_with_probs, head_weighted_attention, lfe_scores
from vitbench.methods.slimming.lowpass import (
    IMAGE_FILTERS,
    image_lowpass_mask,
    low_frequency_energy,
    lowpass_images,
    token_lowpass_kernel,
)


def _official_style_mask(k: int, cutoff: float) -> np.ndarray:
    """The square mask built by hand: Gaussian at (k-1)/2 on a k x k grid, rolled by -(k//2)."""
    sigma2 = (k * cutoff / 2) ** 2
    m0 = (k - 1) / 2
    g = np.zeros((k, k))
    for u in range(k):
        for v in range(k):
            g[u, v] = math.exp(-((u - m0) ** 2 + (v - m0) ** 2) / (2 * sigma2))
    return np.roll(g, (-(k // 2), -(k // 2)), axis=(0, 1))


def np_official_lowpass(x: np.ndarray, cutoff: float) -> np.ndarray:
    """The filter the official VTC-LFC code ran (torch 1.7.1), computed from its definition.

    ``filtering`` (deit_pruning_tools.py @ cfea7ee, lines 60-99): full spectrum
    (``rfft(onesided=False)``), amplitude times the mask -- a Gaussian centred at (K-1)/2 of a
    K x K grid rolled by -(K//2) -- with the phase kept, then ``irfft(onesided=False)``: only
    the W//2+1 columns l = 0 .. W//2 are read and a real-output inverse transform is formed,
    ``x[h, w] = 1/(HW) sum_k sum_{l <= W//2} c_l Re(Y[k, l] exp(2 pi i (k h / H + l w / W)))``
    with ``c_l = 1`` for the DC column (and the Nyquist column of an even W), 2 otherwise.
    Explicit DFT matrices in float64, no FFT library; [..., H, W] -> [..., H, W].
    """
    h, w = x.shape[-2:]
    k = min(h, w)
    sigma2 = (k * cutoff / 2) ** 2
    uy = np.roll(np.arange(h) - (h - 1) / 2, -(h // 2))  # the grid rolled like the official ifftshift
    ux = np.roll(np.arange(w) - (w - 1) / 2, -(w // 2))
    mask = np.exp(-(uy[:, None] ** 2 + ux[None, :] ** 2) / (2 * sigma2))
    eh = np.exp(2j * np.pi * np.outer(np.arange(h), np.arange(h)) / h)  # [H, H], symmetric
    ew = np.exp(2j * np.pi * np.outer(np.arange(w), np.arange(w)) / w)  # [W, W]
    spectrum = np.conj(eh) @ x.astype(np.float64) @ np.conj(ew)  # forward 2-D DFT
    half = w // 2 + 1
    c = np.full(half, 2.0)
    c[0] = 1.0
    if w % 2 == 0:
        c[-1] = 1.0
    y = (spectrum * mask)[..., :half] * c
    return np.real(eh @ y @ ew[:half, :]) / (h * w)


def np_symmetric_lowpass(x: np.ndarray, cutoff: float) -> np.ndarray:
    """Real part of the full inverse transform of the masked spectrum (numpy FFT)."""
    h, w = x.shape[-2:]
    return np.real(np.fft.ifft2(np.fft.fft2(x) * image_lowpass_mask(h, w, cutoff).double().numpy()))


@pytest.mark.parametrize("size", [(32, 32), (33, 33), (224, 224), (16, 20), (21, 14)])
def test_official_filter_equals_independent_definition(size: tuple[int, int]) -> None:
    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(sum(size)))
    want = np_official_lowpass(x.double().numpy(), 0.1)
    got = lowpass_images(x, 0.1)  # the default is the official filter
    assert np.abs(got.double().numpy() - want).max() < 1e-6
    got64 = lowpass_images(x.double(), 0.1, "official")
    assert np.abs(got64.numpy() - want).max() < 1e-12


@pytest.mark.parametrize("n", [32, 33, 224])
def test_symmetric_filter_and_its_difference(n: int) -> None:
    x = torch.randn(2, 3, n, n, generator=torch.Generator().manual_seed(n))
    sym = lowpass_images(x, 0.1, "symmetric")
    assert np.abs(sym.double().numpy() - np_symmetric_lowpass(x.double().numpy(), 0.1)).max() < 1e-6
    diff = float((lowpass_images(x, 0.1, "official") - sym).abs().max())
    if n % 2:
        assert diff < 1e-6  # odd side: the mask is symmetric, the two filters agree
    else:
        assert diff > 1e-2  # even side: the mask is half a bin off DC, they do not


def test_unknown_filter() -> None:
    assert IMAGE_FILTERS == ("official", "symmetric")
    with pytest.raises(VitbenchError, match="official, symmetric"):
        lowpass_images(torch.zeros(1, 3, 8, 8), 0.1, "gaussian")


@pytest.mark.parametrize("k", [7, 8, 32])
def test_mask_matches_hand_built(k: int) -> None:
    got = image_lowpass_mask(k, k, 0.1).numpy()
    np.testing.assert_allclose(got, _official_style_mask(k, 0.1), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("filt", IMAGE_FILTERS)
def test_constant_image_passes(filt: str) -> None:
    x = torch.full((2, 3, 33, 33), 0.7)
    # odd side: the Gaussian peak sits exactly on DC -> unchanged
    torch.testing.assert_close(lowpass_images(x, 0.1, filt), x, rtol=1e-5, atol=1e-6)
    # even side: the official centre (K-1)/2 is half a bin off DC on each axis
    y = torch.full((1, 3, 32, 32), 0.7)
    sigma = 32 * 0.1 / 2
    torch.testing.assert_close(
        lowpass_images(y, 0.1, filt), y * math.exp(-1 / (4 * sigma**2)), rtol=1e-5, atol=1e-6
    )


def test_smooth_image_kept_high_frequency_suppressed() -> None:
    n = 33
    i = torch.arange(n, dtype=torch.float32)
    smooth = torch.cos(2 * math.pi * i / n)[None, :] * torch.ones(n, 1)  # frequency 1 along x
    out = lowpass_images(smooth.expand(1, 3, n, n), 0.3)  # sigma = 4.95 bins
    gain1 = math.exp(-1 / (2 * (n * 0.3 / 2) ** 2))  # 0.98
    torch.testing.assert_close(out[0, 0], smooth * gain1, rtol=1e-4, atol=1e-5)
    m = 32
    j = torch.arange(m, dtype=torch.float32)
    checker = ((j[:, None] + j[None, :]) % 2) * 2 - 1  # Nyquist pattern, zero mean
    mixed = checker + 0.5
    out = lowpass_images(torch.stack([checker, mixed])[:, None], 0.1)
    assert out[0].abs().max() < 1e-6  # checkerboard suppressed
    dc = math.exp(-1 / (4 * (m * 0.1 / 2) ** 2))
    torch.testing.assert_close(out[1, 0], torch.full((m, m), 0.5 * dc), rtol=1e-5, atol=1e-5)


def test_large_sigma_is_identity() -> None:
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(lowpass_images(x, 1e6), x, rtol=1e-5, atol=1e-5)


def test_output_real_and_dtype() -> None:
    x = torch.randn(1, 3, 8, 8, dtype=torch.float64)
    out = lowpass_images(x, 0.5)
    assert out.dtype == torch.float64 and not out.is_complex()


@pytest.mark.parametrize("bad", [0.0, -0.1, float("nan")])
def test_bad_cutoff(bad: float) -> None:
    with pytest.raises(VitbenchError, match="positive"):
        lowpass_images(torch.zeros(1, 3, 8, 8), bad)


def test_token_kernel_unshifted_layout() -> None:
    n, c = 196, 0.15
    h = token_lowpass_kernel(n, c)
    sigma = n * c / 2
    assert abs(sigma - 14.7) < 1e-9
    assert h[0] > 0.999 and h[-1] > 0.999  # low frequencies of the unshifted FFT
    assert h[n // 2] < 0.01  # highest frequency
    k = torch.arange(n, dtype=torch.float32)
    torch.testing.assert_close(h, 1 - torch.exp(-((k - (n - 1) / 2) ** 2) / (2 * sigma**2)))


def test_constant_sequence_all_energy_at_dc() -> None:
    n, cutoff = 16, 0.15
    tokens = torch.randn(1, 1, 5).expand(2, n, 5).clone()  # same token everywhere
    spectrum = torch.fft.fft(tokens, dim=1)
    assert spectrum[:, 1:].abs().max() < 1e-5  # all energy at DC
    energy = low_frequency_energy(tokens, cutoff)
    h0 = float(token_lowpass_kernel(n, cutoff)[0])
    torch.testing.assert_close(energy, torch.full((2, n), h0), rtol=1e-5, atol=1e-6)


def test_alternating_sequence_is_high_frequency() -> None:
    n, cutoff = 16, 0.15
    sign = torch.tensor([(-1.0) ** j for j in range(n)])
    tokens = sign[None, :, None] * torch.ones(1, n, 3)
    hn2 = float(token_lowpass_kernel(n, cutoff)[n // 2])
    torch.testing.assert_close(
        low_frequency_energy(tokens, cutoff), torch.full((1, n), hn2), rtol=1e-4, atol=1e-6
    )
    assert hn2 < 0.2


def test_head_weighted_attention_hand_computed() -> None:
    g = torch.Generator().manual_seed(1)
    probs = torch.rand(2, 3, 5, 5, generator=g).softmax(-1)
    got = head_weighted_attention(probs, prefix=1)
    want = torch.zeros(2, 4)
    for b in range(2):
        for j in range(1, 5):
            cls_t = sum(probs[b, h, 0, j] * probs[b, h, 1:, 0].mean() for h in range(3)) / 3
            img_t = sum(probs[b, h, 1:, j].mean() * probs[b, h, 0, 0] for h in range(3)) / 3
            want[b, j - 1] = cls_t + img_t
    torch.testing.assert_close(got, want)


def test_explicit_attention_matches_timm() -> None:
    model = make_model("vit")
    blk = model.blocks[0]
    h = blk.norm1(torch.randn(2, 17, model.embed_dim))
    out, probs = attention_with_probs(blk.attn, h)
    torch.testing.assert_close(out, blk.attn(h), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(probs.sum(-1), torch.ones(probs.shape[:-1]))


@pytest.mark.parametrize("order", ["official", "spatial"])
def test_lfe_keeps_official_topk_in_its_token_order(order: str) -> None:
    model = make_model("depth12")
    cls = METHODS.get("lfe")
    n0 = model.patch_embed.num_patches
    cfg = (n0,) * 3 + (10,) * 9
    params = cls.params_for(1.0, model, {"token_cfg": cfg, "token_order": order})
    x = model_input(model, batch=3)
    # reference: run blocks 0..3 by hand and select with the official formula
    with torch.no_grad():
        t = model._pos_embed(model.patch_embed(x))
        for blk in model.blocks[:3]:
            t = blk(t)
        blk = model.blocks[3]
        out, probs = attention_with_probs(blk.attn, blk.norm1(t))
        t = t + out
        scores = lfe_scores(t, probs, 1, 0.15)
        ranked = scores.topk(10, dim=1).indices  # distinct scores: descending
        if order == "spatial":
            want = ranked.sort(dim=1).values
        else:  # the official selector's CUDA order: index order, the 10th ranked token last
            want = torch.cat([ranked[:, :-1].sort(dim=1).values, ranked[:, -1:]], dim=1)
    captured = {}

    def hook(_m, args):
        captured["x"] = args[0]

    rm = model.blocks[4].register_forward_pre_hook(hook)
    try:
        with torch.no_grad(), cls.apply(model, params) as handle:
            model(x)
            assert handle.tokens_per_block == [17] * 4 + [11] * 8
    finally:
        rm.remove()
    got = captured["x"]
    idx = want[..., None].expand(-1, -1, t.shape[-1])
    # the kept tokens after block 3's MLP are block 3's MLP applied to the selected tokens
    sel = torch.cat([t[:, :1], t[:, 1:].gather(1, idx)], dim=1)
    ref = sel + blk.drop_path2(blk.ls2(blk.mlp(blk.norm2(sel))))
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)


def test_lfe_bad_inputs() -> None:
    model = make_model("depth12")
    cls = METHODS.get("lfe")
    with pytest.raises(VitbenchError, match="sigma"):
        cls.params_for(0.7, model, {"cutoff_token": 1.0})
    with pytest.raises(VitbenchError, match="one per block"):
        cls.apply(model, cls.params_for(0.7, model, {"token_cfg": (5, 4)}))
    with pytest.raises(VitbenchError, match="non-increasing"):
        cls.params_for(0.7, model, {"token_cfg": (5, 6) + (4,) * 10})


def test_lfe_token_cfg_down_to_cls_only() -> None:
    model = make_model("depth12")
    cls = METHODS.get("lfe")
    cfg = (15, 14, 13, 13, 13, 12, 12, 12, 12, 9, 0, 0)
    params = cls.params_for(1.0, model, {"token_cfg": cfg})
    x = model_input(model, batch=2)
    with torch.no_grad(), cls.apply(model, params) as handle:
        out = model(x)
        assert handle.tokens_per_block == cls.schedule(model, params)
    assert handle.tokens_per_block == [17, 16, 15, 14, 14, 14, 13, 13, 13, 13, 10, 1]
    assert torch.isfinite(out).all()
