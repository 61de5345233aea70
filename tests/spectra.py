"""Where in the spectrum a dream put its detail: the depth tests' measure."""

from __future__ import annotations

import numpy as np


def band_shares(detail: np.ndarray) -> tuple[float, float]:
    """Shares of the added detail's power in coarse (wavelength > 16 px) and fine (< 8 px) bands."""
    power = np.abs(np.fft.fft2(detail - detail.mean())) ** 2
    fy = np.fft.fftfreq(detail.shape[0])[:, None]
    fx = np.fft.fftfreq(detail.shape[1])[None, :]
    radius = np.sqrt(fx**2 + fy**2)
    total = power.sum()
    return float(power[radius < 1 / 16].sum() / total), float(power[radius >= 1 / 8].sum() / total)
