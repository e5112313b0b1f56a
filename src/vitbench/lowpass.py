"""Gaussian frequency filters of VTC-LFC: the image low-pass G(.) and the token-sequence filter.

Wang et al., "VTC-LFC: Vision Transformer Compression with Low-Frequency Components",
NeurIPS 2022 (official code: Daner-Wang/VTC-LFC; ``filtering`` in
``pruning/tools/deit_pruning_tools.py`` and ``selector`` in ``models/deit/deit.py``).

Image low-pass (used by LFS): per image and colour channel, a 2-D FFT; the amplitude is
multiplied by a Gaussian centred at ``m0 = (K - 1) / 2`` of a ``K x K`` grid (``K = min(H, W)``,
standard deviation ``sigma = K * cutoff / 2`` frequency bins) that is ``ifftshift``-ed so its peak
sits on the DC bin; the phase is kept; an inverse 2-D FFT returns to the spatial domain and the
real part is taken. Multiplying the amplitude by a real non-negative mask and keeping the phase
is the same as multiplying the complex spectrum by the mask, which is what is done here.

Faithful quirk: for an even ``K`` the centre ``(K - 1) / 2`` falls between two bins, so after
``ifftshift`` the DC bin is half a bin off the peak on each axis and a constant image is scaled
by ``exp(-1 / (4 sigma^2))`` (0.998 for ImageNet's 224 at cutoff 0.1, 0.907 for 32-pixel demo
images). For an odd ``K`` the peak is exactly on DC and a constant image passes unchanged.

Token filter (used by LFE): on the *unshifted* 1-D FFT of the token sequence (length ``n``),
``H(k) = 1 - exp(-(k - m0)^2 / (2 sigma^2))`` with ``m0 = (n - 1) / 2`` and
``sigma = n * cutoff / 2``; ``H`` is about 1 near ``k = 0`` and ``k = n - 1`` (the low
frequencies of the unshifted layout) and about 0 near ``n / 2`` (the highest frequencies).
"""

from __future__ import annotations

import math

import torch

from vitbench.errors import VitbenchError


def check_cutoff(cutoff: float, name: str = "cutoff") -> float:
    """Return ``cutoff`` as a float, or raise a one-line error unless it is a positive finite number."""
    if not isinstance(cutoff, (int, float)) or not math.isfinite(float(cutoff)) or float(cutoff) <= 0:
        raise VitbenchError(
            f"{name} {cutoff!r} must be a positive number (sigma = side * {name} / 2); use e.g. 0.1"
        )
    return float(cutoff)


def image_lowpass_mask(
    height: int, width: int, cutoff: float = 0.1, device: torch.device | None = None
) -> torch.Tensor:
    """Gaussian low-pass mask in the unshifted FFT layout, [height, width] float32.

    The Gaussian is built on the centred grid (peak at ``(side - 1) / 2`` of each axis,
    ``sigma = min(height, width) * cutoff / 2``) and then ``ifftshift``-ed, as the official
    ``filtering`` does on its square ``K x K`` grid (for square images this is that mask exactly;
    non-square images use the same sigma with each axis' own centre).
    """
    cutoff = check_cutoff(cutoff)
    sigma2 = (min(height, width) * cutoff / 2.0) ** 2
    ys = torch.arange(height, dtype=torch.float32, device=device) - (height - 1) / 2.0
    xs = torch.arange(width, dtype=torch.float32, device=device) - (width - 1) / 2.0
    centred = torch.exp(-(ys[:, None] ** 2 + xs[None, :] ** 2) / (2.0 * sigma2))
    return torch.fft.ifftshift(centred)


def lowpass_images(images: torch.Tensor, cutoff: float = 0.1) -> torch.Tensor:
    """G(x): the Gaussian low-pass of a batch of (normalised) images.

    Args:
        images: [B, C, H, W] real tensor (the official code filters after mean/std normalisation).
        cutoff: the cutoff factor L (``--cutoff-channel``, default 0.1); sigma = min(H, W) * L / 2.

    Returns:
        [B, C, H, W] real tensor of the same dtype: Re(ifft2(fft2(x) * mask)).
    """
    if images.dim() != 4:
        raise VitbenchError(f"lowpass_images takes [B, C, H, W] images; got shape {tuple(images.shape)}")
    h, w = images.shape[-2:]
    mask = image_lowpass_mask(h, w, cutoff, images.device)
    spectrum = torch.fft.fft2(images.float()) * mask
    return torch.fft.ifft2(spectrum).real.to(images.dtype)


def token_lowpass_kernel(n: int, cutoff: float = 0.15, device: torch.device | None = None) -> torch.Tensor:
    """LFE's filter on the unshifted 1-D FFT of ``n`` tokens, [n] float32.

    ``H(k) = 1 - exp(-(k - (n - 1) / 2)^2 / (2 sigma^2))``, ``sigma = n * cutoff / 2``; ``cutoff``
    is the official ``1 - --cutoff-token`` (0.15 for the default 0.85).
    """
    cutoff = check_cutoff(cutoff, "token cutoff")
    k = torch.arange(n, dtype=torch.float32, device=device)
    sigma2 = (n * cutoff / 2.0) ** 2
    return 1.0 - torch.exp(-((k - (n - 1) / 2.0) ** 2) / (2.0 * sigma2))


def token_lowpass(tokens: torch.Tensor, cutoff: float = 0.15) -> torch.Tensor:
    """Low-frequency part of a token sequence, complex magnitude, [B, n, C] float32.

    Args:
        tokens: [B, n, C] image tokens in their current order.
        cutoff: sigma factor (``1 - cutoff_token``).

    Returns:
        |ifft(fft(x, over tokens) * H)| per token and channel.
    """
    n = tokens.shape[1]
    kernel = token_lowpass_kernel(n, cutoff, tokens.device)
    spectrum = torch.fft.fft(tokens.float(), dim=1) * kernel[None, :, None]
    return torch.fft.ifft(spectrum, dim=1).abs()


def low_frequency_energy(tokens: torch.Tensor, cutoff: float = 0.15) -> torch.Tensor:
    """LFE of every token: sum_c |X_lf[j, c]| / mean_j' sum_c |X[j', c]|, [B, n] float32.

    Args:
        tokens: [B, n, C] image tokens (detached by the caller when scores must not carry grads).
        cutoff: sigma factor of :func:`token_lowpass_kernel`.
    """
    lf = token_lowpass(tokens, cutoff).sum(dim=-1)  # [B, n]
    norm = tokens.float().abs().sum(dim=-1).mean(dim=-1, keepdim=True)  # [B, 1]
    return lf / norm


__all__ = [
    "check_cutoff",
    "image_lowpass_mask",
    "low_frequency_energy",
    "lowpass_images",
    "token_lowpass",
    "token_lowpass_kernel",
]
