"""Display stretches, colours and sky overlays shared by the panels and the figures."""
from __future__ import annotations

import numpy as np
import pytest

from smp_model.demo import demo_manifest_path
from smp_model.display import (STRETCHES, exposure_overlays, stretch_curve,
                               stretched_colors)
from smp_model.fit import DetectionPhotometry
from smp_model.panels import five_panels


@pytest.fixture(scope="module")
def demo_fit():
    return DetectionPhotometry(demo_manifest_path()).fit_single((0.0, 0.0))


@pytest.mark.parametrize("stretch", list(STRETCHES))
def test_curves_run_from_0_to_1_monotonically(stretch, demo_fit):
    panels = five_panels(demo_fit)
    curve = stretch_curve(stretch, panels, (float(panels["image"].min()),
                                            float(panels["image"].max())))
    assert curve[0] == pytest.approx(0.0, abs=1e-2) and curve[-1] == pytest.approx(1.0)
    assert np.all(np.diff(curve) >= 0)


def test_known_curves():
    t = np.linspace(0, 1, 256)
    assert stretch_curve("sqrt") == pytest.approx(np.sqrt(t))
    assert stretch_curve("log")[128] == pytest.approx(np.log10(1000 * t[128] + 1) / 3.0004,
                                                      rel=1e-3)
    assert stretch_curve("minmax") == pytest.approx(t)


def test_histogram_equalisation_spreads_the_pixels_evenly(demo_fit):
    panels = five_panels(demo_fit)
    values = panels["image"][panels.usable]
    lo, hi = float(values.min()), float(values.max())
    curve = stretch_curve("histeq", panels, (lo, hi))
    shown = np.interp((values - lo) / (hi - lo), np.linspace(0, 1, curve.size), curve)
    counts, _ = np.histogram(shown, bins=4, range=(0, 1))
    assert counts.min() > 0.15 * values.size      # a linear stretch puts ~all in one bin


def test_inverted_colours_are_reversed():
    base = np.array([[0, 0, 0, 255], [255, 255, 255, 255]], float)
    t = np.linspace(0, 1, 5)
    assert stretched_colors(base, t, invert=True)[:, 0] == pytest.approx(255 * (1 - t))


def test_overlays_follow_the_wcs(demo_fit):
    for ex in demo_fit.scene.exposures:
        o = exposure_overlays(ex, demo_fit.manifest.ra, demo_fit.manifest.dec,
                              demo_fit.settings)
        tx, ty = ex.target_xy
        assert o.target == pytest.approx((tx - ex.origin[0], ty - ex.origin[1]))
        ra0, dec0 = ex.pixel_to_sky(tx, ty)
        step = 5.0
        _, dec_n = ex.pixel_to_sky(tx + step * o.north[0], ty + step * o.north[1])
        ra_e, dec_e = ex.pixel_to_sky(tx + step * o.east[0], ty + step * o.east[1])
        moved = step / o.arcsec_px / 3600.0             # degrees
        assert float(dec_n) - float(dec0) == pytest.approx(moved, rel=0.02)
        assert (float(ra_e) - float(ra0)) * np.cos(np.radians(float(dec0))) == \
            pytest.approx(moved, rel=0.02)
        assert float(dec_e) == pytest.approx(float(dec0), abs=0.02 * moved)
        assert 1.0 / o.arcsec_px == pytest.approx(ex.pixel_scale, rel=0.01)
        # the grid outline is n*s arcsec on a side
        side = np.hypot(*(o.grid[1] - o.grid[0])) / o.arcsec_px
        assert side == pytest.approx(demo_fit.settings.grid_size
                                     * demo_fit.settings.grid_step_arcsec, rel=0.02)
