"""Severity monotonicity on real images: the dense demo model's error grows with severity."""

from __future__ import annotations

import numpy as np
import torch

from vitbench.core.models import create_model, data_config
from vitbench.data import load_dataset
from vitbench.data.noise import apply_noise, corruption_names
from vitbench.data.prep import prepare_images
from vitbench.data.samples import to_tensor

N_IMAGES = 100
TOLERANCE_PTS = 3.0  # 3 of 100 images: sampling noise between neighbouring severities


def _errors(
    model: torch.nn.Module, cfg: dict, images: np.ndarray, labels: np.ndarray, ids: np.ndarray, name: str
) -> list[float]:
    out = []
    for severity in range(1, 6):
        noisy = apply_noise(images, ids, name, severity, seed=0)
        with torch.inference_mode():
            pred = model(to_tensor(noisy, cfg)).argmax(-1).numpy()
        out.append(100.0 * float((pred != labels).mean()))
    return out


def test_error_non_decreasing_in_severity_on_most_corruptions() -> None:
    """All 19 corruptions x 5 severities on 100 real test digits (about 10 s on 2 cores).

    Curves may be flat where the model is already at chance (brightness/fog/frost/snow move the
    black MNIST background) or where the corruption cannot act on grayscale digits (saturate;
    shot/speckle noise scale with intensity and leave the black background black).
    """
    data = load_dataset("mnist-demo", split="test", limit=N_IMAGES)
    model = create_model("vitbench_demo_vit", "demo").eval()
    cfg = data_config(model)
    images = prepare_images(data.images, cfg)
    names = corruption_names("all")
    assert len(names) == 19
    curves = {name: _errors(model, cfg, images, data.labels, data.sample_ids, name) for name in names}
    monotone = [n for n, e in curves.items() if all(b >= a - TOLERANCE_PTS for a, b in zip(e, e[1:]))]
    assert len(monotone) >= 15, {k: v for k, v in curves.items() if k not in monotone}
    mean = np.mean(list(curves.values()), axis=0)  # [5] mean error per severity
    assert np.all(np.diff(mean) > -1.0) and mean[-1] > mean[0] + 15.0, mean
