"""Gaussian frequency filters of VTC-LFC: the image low-pass G(.) and the token-sequence filter.

Wang et al., "VTC-LFC: Vision Transformer Compression with Low-Frequency Components",
NeurIPS 2022 (official code: Daner-Wang/VTC-LFC; ``filtering`` in
``pruning/tools/deit_pruning_tools.py`` and ``selector`` in ``models/deit/deit.py``).

Image low-pass (used by LFS and the cascade), two variants (``filter``):

* ``official`` (default): the filter the paper's code ran. ``filtering`` in
  ``pruning/tools/deit_pruning_tools.py`` (commit cfea7ee, lines 60-99) on torch 1.7.1 (pinned
  in its ``requirements.txt``) takes the full 2-D spectrum (``torch.rfft(..., onesided=False)``,
  line 80), multiplies its amplitude by the mask and keeps the phase (lines 86-89, the same as
  multiplying the complex spectrum by the real non-negative mask), and returns
  ``torch.irfft(..., signal_ndim=2, onesided=False)`` (line 94). That call keeps only the first
  ``W // 2 + 1`` frequency columns and performs a real-output (Hermitian) inverse transform of
  them to an ``H x W`` image. Here: ``Y = fft2(x) * mask`` restricted to columns
  ``0 .. W // 2``; ``Z = ifft(Y)`` along the rows (H axis); the imaginary parts of ``Z``'s DC
  column (and, for an even ``W``, its Nyquist column) are dropped, as a real-output inverse
  transform defines them; ``x_lp = irfft(Z, n=W)`` along W. Dropping those imaginary parts
  explicitly makes the result independent of how an FFT backend treats non-Hermitian input to a
  real-output inverse transform (which it is free to do differently). Because the mask is not
  symmetric for even sides (below), the result is *not* the real part of the full inverse transform: columns
  ``W // 2 + 1 .. W - 1`` are replaced by the Hermitian mirror of the kept ones.
  (The official branch for torch > 1.7.1, lines 74-78 and 90-92, cannot run: it indexes image
  column 1 instead of the real/imaginary axis and returns a complex tensor.)
* ``symmetric``: ``Re(ifft2(fft2(x) * mask))``, the real part of the full inverse transform.
  It equals the real inverse transform of the spectrum under the Hermitian average of the mask,
  ``(M(k) + M(-k)) / 2``. For an odd side the mask is symmetric and the two filters agree (to
  float rounding, 7e-8 at 33x33); for an even side they differ (max |difference| 8.3e-2 at 32x32
  and 1.8e-2 at 224x224 on seeded N(0, 1) images, output rms 0.078 and 0.086, cutoff 0.1).

The mask (``image_lowpass_mask``): a Gaussian centred at ``m0 = (K - 1) / 2`` of a ``K x K``
grid (``K = min(H, W)``, standard deviation ``sigma = K * cutoff / 2`` frequency bins, official
lines 64-72) that is ``ifftshift``-ed (rolled by ``-(K // 2)``: official ``ifftshift``, lines
42-51, applied at line 85).
For an even ``K`` the centre falls between two bins, so after the shift the peak is half a bin
past DC on each axis (mask at frequency ``k`` = Gaussian at ``k + 1/2``): the mask is not
symmetric (``M(k) != M(-k)``) and a constant image is scaled by ``exp(-1 / (4 sigma^2))`` (0.998
for ImageNet's 224 at cutoff 0.1, 0.907 for 32-pixel demo images). For an odd ``K`` the peak is
exactly on DC and a constant image passes unchanged.

Token filter (used by LFE): on the *unshifted* 1-D FFT of the token sequence (length ``n``),
``H(k) = 1 - exp(-(k - m0)^2 / (2 sigma^2))`` with ``m0 = (n - 1) / 2`` and
``sigma = n * cutoff / 2``; ``H`` is about 1 near ``k = 0`` and ``k = n - 1`` (the low
frequencies of the unshifted layout) and about 0 near ``n / 2`` (the highest frequencies).
The low-frequency part is ``|ifft(fft(x) * H)|``, the official ``selector``'s branch for
torch > 1.7.1 (``models/deit/deit.py`` lines 51-56 and 73-75), which LFE follows. Its torch-1.7.1
branch (lines 57-60 and 76-78) uses ``irfft(..., signal_ndim=1, onesided=False)``, the same
one-sided real inverse transform as the image filter, and ``H(k) != H(n - k)`` for every ``n``,
so the two branches differ (up to 20 % per token on random tokens; LFE top-1 on 1000 demo test
digits 90.6 vs 90.3 at keep rate 0.7, 67.1 vs 66.9 at 0.5); LFE is not changed here.
"""

from __future__ import annotations

import math

import torch

from vitbench.core.errors import VitbenchError

#: Image low-pass variants: the filter the official code ran (default) and the symmetric one.
IMAGE_FILTERS: tuple[str, ...] = ("official", "symmetric")


def check_cutoff(cutoff: float, name: str = "cutoff") -> float:
    """Return ``cutoff`` as a float, or raise a one-line error unless it is a positive finite number."""
    if not isinstance(cutoff, (int, float)) or not math.isfinite(float(cutoff)) or float(cutoff) <= 0:
        raise VitbenchError(
            f"{name} {cutoff!r} must be a positive number (sigma = side * {name} / 2); use e.g. 0.1"
        )
    return float(cutoff)


def image_lowpass_mask(
    height: int,
    width: int,
    cutoff: float = 0.1,
    device: torch.device | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Gaussian low-pass mask in the unshifted FFT layout, [height, width] of ``dtype``.

    The Gaussian is built on the centred grid (peak at ``(side - 1) / 2`` of each axis,
    ``sigma = min(height, width) * cutoff / 2``) and then ``ifftshift``-ed, as the official
    ``filtering`` does on its square ``K x K`` grid (for square images this is that mask exactly;
    non-square images use the same sigma with each axis' own centre).
    """
    cutoff = check_cutoff(cutoff)
    sigma2 = (min(height, width) * cutoff / 2.0) ** 2
    ys = torch.arange(height, dtype=dtype, device=device) - (height - 1) / 2.0
    xs = torch.arange(width, dtype=dtype, device=device) - (width - 1) / 2.0
    centred = torch.exp(-(ys[:, None] ** 2 + xs[None, :] ** 2) / (2.0 * sigma2))
    return torch.fft.ifftshift(centred)


def check_filter(name: str, field: str = "lowpass") -> str:
    """Return ``name`` or raise a one-line error unless it is one of :data:`IMAGE_FILTERS`."""
    if name not in IMAGE_FILTERS:
        raise VitbenchError(
            f"{field} {name!r} is not an image low-pass filter; use one of: {', '.join(IMAGE_FILTERS)} "
            "(official = the filter the VTC-LFC code ran)"
        )
    return name


def lowpass_images(images: torch.Tensor, cutoff: float = 0.1, filter: str = "official") -> torch.Tensor:
    """G(x): the Gaussian low-pass of a batch of (normalised) images.

    Args:
        images: [B, C, H, W] real tensor (the official code filters after mean/std normalisation).
        cutoff: the cutoff factor L (``--cutoff-channel``, default 0.1); sigma = min(H, W) * L / 2.
        filter: ``official`` (the one-sided real inverse transform the paper's code ran on
            torch 1.7.1) or ``symmetric`` (real part of the full inverse transform); see the
            module docstring.

    Returns:
        [B, C, H, W] real tensor of the same dtype (computed in float32, float64 for float64 input).

    Raises:
        VitbenchError: images not 4-D, a non-positive cutoff or an unknown filter.
    """
    if images.dim() != 4:
        raise VitbenchError(f"lowpass_images takes [B, C, H, W] images; got shape {tuple(images.shape)}")
    check_filter(filter)
    h, w = images.shape[-2:]
    work = torch.float64 if images.dtype == torch.float64 else torch.float32
    mask = image_lowpass_mask(h, w, cutoff, images.device, work)
    spectrum = torch.fft.fft2(images.to(work)) * mask
    if filter == "symmetric":
        return torch.fft.ifft2(spectrum).real.to(images.dtype)
    rows = torch.fft.ifft(spectrum[..., : w // 2 + 1], dim=-2)  # [B, C, H, W // 2 + 1]
    real_bins = [0, w // 2] if w % 2 == 0 else [0]  # DC (and Nyquist): real in a Hermitian spectrum
    rows[..., real_bins] = rows[..., real_bins].real.to(rows.dtype)
    return torch.fft.irfft(rows, n=w, dim=-1).to(images.dtype)


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
    "IMAGE_FILTERS",
    "check_cutoff",
    "check_filter",
    "image_lowpass_mask",
    "low_frequency_energy",
    "lowpass_images",
    "token_lowpass",
    "token_lowpass_kernel",
]
