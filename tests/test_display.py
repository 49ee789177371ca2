"""Display stretches, colours and sky overlays shared by the panels and the figures."""
from __future__ import annotations

import numpy as np
import pytest

from smp_model.fit.panels import five_panels
from smp_model.fit.photometry import DetectionPhotometry
from smp_model.inputs.mask_bits import MASK_BITS, mask_bit_names, mask_text
from smp_model.outputs.display import (COINCIDENT_LABEL_DIRECTIONS, COLORMAPS, OVERLAY_COLORS,
                                       STRETCHES, exposure_overlays, exposure_sky_affine,
                                       label_directions, overlay_colors, pixel_jacobian,
                                       sky_aligned_affine, stamp_extent, stretch_curve,
                                       stretched_colors)
from smp_model.simulation.demo import demo_manifest_path


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


class TanExposure:
    """A stamp of a TAN WCS with CD = scale * rotation(angle) (times a flip of x): the
    parts of `LoadedExposure` the display reads."""

    def __init__(self, angle_deg: float, flip: bool, scale: float = 0.263,
                 ra: float = 31.7, dec: float = -5.6, origin=(1001, 2001)):
        from astropy.wcs import WCS
        t = np.radians(angle_deg)
        rotation = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
        cd = scale / 3600.0 * rotation @ np.diag([-1.0 if flip else 1.0, 1.0])
        self.wcs = WCS(naxis=2)
        self.wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
        self.wcs.wcs.crval = [ra, dec]
        self.wcs.wcs.crpix = [origin[0] + 14.3, origin[1] + 15.6]
        self.wcs.wcs.cd = cd
        self.origin = origin
        self.target_xy = (origin[0] + 14.3, origin[1] + 15.6)   # at (ra, dec)
        self.cd_arcsec = cd * 3600.0

    def pixel_to_sky(self, x, y):
        ra, dec = self.wcs.all_pix2world(np.asarray(x, float), np.asarray(y, float), 1)
        return float(ra), float(dec)

    def sky_to_pixel(self, ra, dec):
        x, y = self.wcs.all_world2pix(np.asarray(ra, float), np.asarray(dec, float), 1)
        return float(x), float(y)


@pytest.mark.parametrize("angle", [0.0, 33.0, 90.0, -127.0])
@pytest.mark.parametrize("flip", [False, True])
def test_sky_aligned_frame_puts_north_up_and_east_left(angle, flip):
    ex = TanExposure(angle, flip)
    # a TAN WCS at its reference point: the Jacobian d(east, north) / d(x, y) is CD
    assert pixel_jacobian(ex) == pytest.approx(ex.cd_arcsec, abs=1e-6)
    affine = exposure_sky_affine(ex)
    a, b = affine[:, :2], affine[:, 2]
    target = np.subtract(ex.target_xy, ex.origin)
    assert a @ target + b == pytest.approx([0.0, 0.0], abs=1e-9)      # target at origin
    # 1" north and 1" east of the target (by the WCS) land at (0, 1) and (-1, 0)
    ra0, dec0 = ex.pixel_to_sky(*ex.target_xy)
    cos = np.cos(np.radians(dec0))
    for (d_east, d_north), want in (((0.0, 1.0), (0.0, 1.0)), ((1.0, 0.0), (-1.0, 0.0)),
                                    ((-2.0, 3.0), (2.0, 3.0))):
        x, y = ex.sky_to_pixel(ra0 + d_east / 3600.0 / cos, dec0 + d_north / 3600.0)
        u, v = x - ex.origin[0], y - ex.origin[1]
        assert a @ (u, v) + b == pytest.approx(want, abs=1e-4)
    # one angular scale: |det| = pixel area in arcsec^2; parity: X = -east, so a CD
    # matrix without the flip (east clockwise from north as the stamp is drawn) is
    # mirrored (det < 0), a flipped one (east anticlockwise, as on the sky) only rotated
    assert abs(np.linalg.det(a)) == pytest.approx(0.263 ** 2, rel=1e-6)
    assert np.sign(np.linalg.det(a)) == (1.0 if flip else -1.0)
    # the standard orientation (north up, east left: CD = diag(-s, s)) is a pure scale
    if flip and angle == 0.0:
        assert a == pytest.approx(0.263 * np.eye(2), abs=1e-6)


def test_sky_affine_is_the_overlays_and_the_extent_holds_every_stamp(demo_fit):
    affines = []
    for ex in demo_fit.scene.exposures:
        o = exposure_overlays(ex, demo_fit.manifest.ra, demo_fit.manifest.dec,
                              demo_fit.settings)
        assert o.sky_affine == pytest.approx(exposure_sky_affine(ex))
        affines.append(o.sky_affine)
        # the overlays' north and east vectors map to +Y and -X
        a = o.sky_affine[:, :2]
        for vector, want in ((o.north, (0.0, 1.0)), (o.east, (-1.0, 0.0))):
            mapped = a @ np.asarray(vector)
            assert mapped / np.hypot(*mapped) == pytest.approx(want, abs=1e-6)
    ny, nx = demo_fit.scene.exposures[0].shape
    x0, x1, y0, y1 = stamp_extent(affines, [(ny, nx)] * len(affines))
    for a in affines:
        for u, v in ((-0.5, -0.5), (nx - 0.5, ny - 0.5), (-0.5, ny - 0.5), (nx - 0.5, -0.5)):
            x, y = a @ (u, v, 1.0)
            assert x0 - 1e-9 <= x <= x1 + 1e-9 and y0 - 1e-9 <= y <= y1 + 1e-9
    # the identity map: the stamp's own pixel edges
    identity = np.hstack([np.eye(2), np.zeros((2, 1))])
    assert stamp_extent([identity], [(30, 20)]) == (-0.5, 19.5, -0.5, 29.5)
    # stamps of different sizes: each with its own
    assert stamp_extent([identity, identity], [(30, 20), (10, 40)]) == \
        (-0.5, 39.5, -0.5, 29.5)
    assert sky_aligned_affine(np.eye(2), (1.0, 2.0)) == pytest.approx(
        np.array([[-1.0, 0.0, 1.0], [0.0, 1.0, -2.0]]))


def test_sky_aligned_figure_draws_north_up_east_left(demo_fit):
    from smp_model.outputs.display import DisplayStyle
    from smp_model.outputs.figures import five_panel_figure
    det = demo_fit.scene.detection_index
    ex = demo_fit.scene.exposures[det]
    ra0, dec0 = ex.pixel_to_sky(*ex.target_xy)
    cos = np.cos(np.radians(float(dec0)))

    def drawn(image, d_east, d_north):
        """Figure pixel (y up) where ``image`` draws the sky point (d_east, d_north)"."""
        x, y = ex.sky_to_pixel(float(ra0) + d_east / 3600 / cos,
                               float(dec0) + d_north / 3600)
        return image.get_transform().transform((x - ex.origin[0], y - ex.origin[1]))

    def directions(fig):
        image = fig.axes[0].images[0]
        target = drawn(image, 0, 0)
        north, east = drawn(image, 0, 1) - target, drawn(image, 1, 0) - target
        return north / np.hypot(*north), east / np.hypot(*east), np.hypot(*north)

    north, east, _ = directions(five_panel_figure(demo_fit))
    assert north != pytest.approx((0, 1), abs=0.05)        # the demo's CCD is rotated
    sky = DisplayStyle(sky_aligned=True)
    fig = five_panel_figure(demo_fit, list(range(len(demo_fit.scene.exposures))), sky)
    north, east, arcsec = directions(fig)
    assert north == pytest.approx((0, 1), abs=1e-3) and east == pytest.approx((-1, 0), abs=1e-3)
    # every row: the target at the same place of its panel, at one scale, and the limits
    # hold every exposure's stamp
    first = fig.axes[0]
    for m, ex in enumerate(demo_fit.scene.exposures):
        ax = fig.axes[5 * m]
        t = ax.images[0].get_transform().transform(np.subtract(ex.target_xy, ex.origin))
        assert t - ax.transAxes.transform((0, 0)) == pytest.approx(
            first.transData.transform((0, 0)) - first.transAxes.transform((0, 0)), abs=0.5)
        assert ax.get_xlim() == first.get_xlim() and ax.get_ylim() == first.get_ylim()
        assert "north up" in ax.get_ylabel()
    assert first.get_xlim()[0] < 0 < first.get_xlim()[1]


# -- overlay colours, label directions, mask bits (issue 28) ------------------------------

@pytest.mark.parametrize("name", COLORMAPS)
def test_every_colour_map_has_overlay_colours_that_stand_out_from_it(name):
    """Each overlay colour is far from every colour of its map (the blue marker and the
    yellow + vanished on viridis), and the two components are told apart."""
    import matplotlib
    lut = matplotlib.colormaps[name](np.linspace(0.0, 1.0, 256))[:, :3] * 255
    colors = overlay_colors(name)
    for rgb in (*colors.components, colors.sky):
        assert np.min(np.linalg.norm(lut - np.array(rgb), axis=1)) >= 150, (name, rgb)
    assert np.linalg.norm(np.subtract(*colors.components)) > 150
    assert set(OVERLAY_COLORS) == set(COLORMAPS)


def test_labels_go_away_from_the_other_component():
    pair = np.array([[0.0, 0.0], [3.0, 4.0]])
    directions = label_directions(pair)
    assert directions == pytest.approx(np.array([[-0.6, -0.8], [0.6, 0.8]]))
    assert label_directions(np.zeros((2, 2))) == pytest.approx(
        np.array(COINCIDENT_LABEL_DIRECTIONS))


def test_mask_values_are_named_by_des_bits():
    assert mask_bit_names(0) == ()
    assert mask_bit_names(8704) == ("EDGE", "NEAREDGE")          # in the DES sample
    assert mask_bit_names(10752) == ("EDGE", "SUSPECT", "NEAREDGE")
    assert mask_bit_names(1 << 15) == ("bit 32768",)
    assert mask_text(0) == "0 (good)" and mask_text(17) == "17 BPM+CRAY"
    assert [b.value for b in MASK_BITS] == [1 << n for n in range(len(MASK_BITS))]


def test_figure_marks_components_apart_in_the_maps_colours(demo_fit):
    from smp_model.outputs.figures import five_panel_figure
    from smp_model.outputs.display import DisplayStyle
    binary = DetectionPhotometry(demo_manifest_path()).fit_binary((0.0, 0.6, 0.0, 0.8))
    fig = five_panel_figure(binary, style=DisplayStyle(colormap="viridis"))
    ax = fig.axes[0]
    markers = [line for line in ax.lines if (line.get_gid() or "").startswith("component")]
    want = overlay_colors("viridis").components
    assert [matplotlib_rgb(m.get_markeredgecolor()) for m in markers] == list(want)
    # the numbers sit on opposite sides along the pair's separation
    texts = [t for t in ax.texts if t.get_text() in ("1", "2")]
    offsets = np.array([t.xyann for t in texts])
    step = np.subtract(*[m.get_xydata()[0] for m in markers])
    assert offsets[0] @ step > 0 and offsets[1] @ step < 0


def matplotlib_rgb(colour) -> tuple[int, int, int]:
    from matplotlib.colors import to_rgb
    return tuple(int(round(255 * c)) for c in to_rgb(colour))
