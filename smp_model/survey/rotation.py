"""Rotation periods from a survey's light curve: folding at a period (`fold`) and a
sinusoid fitted to the folded magnitudes (`fit_rotation`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["RotationFit", "fit_rotation", "fold"]


@dataclass(frozen=True)
class RotationFit:
    """A sinusoid fitted to a light curve folded at ``period_hours``:
    ``mag = mean_mag + (amplitude_mag / 2) cos(2 pi (phase - phase_max_faint))`` where
    ``phase = frac(mjd * 24 / period_hours)``; ``amplitude_mag`` is peak to peak."""
    period_hours: float
    mean_mag: float
    amplitude_mag: float
    amplitude_err: float
    phase_max_faint: float
    chi2: float
    n: int

    def model(self, phase: np.ndarray) -> np.ndarray:
        return self.mean_mag + 0.5 * self.amplitude_mag * np.cos(
            2 * np.pi * (np.asarray(phase) - self.phase_max_faint))


def fold(mjd: np.ndarray, period_hours: float) -> np.ndarray:
    """Rotational phase in [0, 1) of MJDs (days) for a period in hours."""
    return np.mod(np.asarray(mjd, float) * 24.0 / period_hours, 1.0)


def fit_rotation(mjd, mag, mag_err, period_hours: float) -> RotationFit | None:
    """Weighted linear least-squares sinusoid at a known period (None with fewer than 4
    usable points)."""
    mjd, mag, err = (np.asarray(v, float) for v in (mjd, mag, mag_err))
    good = np.isfinite(mjd) & np.isfinite(mag) & np.isfinite(err) & (err > 0)
    if good.sum() < 4:
        return None
    phase = 2 * np.pi * fold(mjd[good], period_hours)
    design = np.column_stack([np.ones(good.sum()), np.cos(phase), np.sin(phase)])
    w = 1.0 / err[good]
    coef, *_ = np.linalg.lstsq(design * w[:, None], mag[good] * w, rcond=None)
    cov = np.linalg.inv((design * w[:, None]).T @ (design * w[:, None]))
    chi2 = float(np.sum(((design @ coef - mag[good]) * w) ** 2))
    a, b = coef[1], coef[2]
    half = math.hypot(a, b)
    grad = np.array([a, b]) / half if half > 0 else np.zeros(2)
    half_err = math.sqrt(max(float(grad @ cov[1:, 1:] @ grad), 0.0))
    return RotationFit(period_hours, float(coef[0]), 2 * half, 2 * half_err,
                       (math.atan2(b, a) / (2 * math.pi)) % 1.0, chi2, int(good.sum()))
