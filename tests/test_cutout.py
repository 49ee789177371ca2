"""DES-rule cutouts (`smp_model.inputs.cutout`, `smp cutout`): the rule against index arithmetic,
CCD edges (partial stamps, zero fill), fpacked images, and a simulated survey whose CCD
images give back the simulator's own stamps and fit to its truth."""
from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from smp_model.errors import StampError
from smp_model.inputs.cutout import cut_stamp, read_planes, write_ccd_image
from smp_model.inputs.manifest import DetectionManifest, des_stamp_origin

REPO = Path(__file__).resolve().parent.parent
NY, NX = 120, 80


def planes():
    """Small 'CCD' whose pixel values encode their own 1-indexed CCD position."""
    y, x = np.mgrid[1:NY + 1, 1:NX + 1]
    return {"SCI": (1000.0 * y + x).astype(np.float32), "MSK": (x % 7 == 0).astype(np.int16),
            "WGT": np.full((NY, NX), 0.25, np.float32)}


def expected(x: float, y: float, n: int = 30):
    """The stamp by index arithmetic: SCI[j, i] is CCD (x0 + i, y0 + j), x0 = ceil(x) - 14;
    pixels beyond the CCD are 0."""
    x0, y0 = math.ceil(x) - (n // 2 - 1), math.ceil(y) - (n // 2 - 1)
    out = {k: np.zeros((n, n), v.dtype) for k, v in planes().items()}
    for j in range(n):
        for i in range(n):
            cx, cy = x0 + i, y0 + j
            if 1 <= cx <= NX and 1 <= cy <= NY:
                for k, v in planes().items():
                    out[k][j, i] = v[cy - 1, cx - 1]
    return out, (x0, y0)


@pytest.mark.parametrize("x, y", [
    (40.0, 60.0), (40.5, 60.5), (40.49, 60.51), (39.999, 60.001),   # interior, half pixels
    (3.2, 60.0), (78.7, 60.0), (40.0, 2.0), (40.0, 119.4),          # partial at each edge
    (1.0, 1.0), (80.0, 120.0), (-5.3, 50.0),                        # corners, centre outside
])
def test_des_rule_matches_index_arithmetic(x, y):
    stamp, origin = cut_stamp(planes(), x, y)
    want, want_origin = expected(x, y)
    assert origin == want_origin == des_stamp_origin(x, y, (30, 30))
    for name in ("SCI", "MSK", "WGT"):
        np.testing.assert_array_equal(stamp[name], want[name])
        assert stamp[name].dtype == want[name].dtype


@pytest.mark.parametrize("suffix", [".fits", ".fits.fz"])
def test_ccd_images_round_trip_exactly(tmp_path, suffix):
    path = write_ccd_image(tmp_path / f"ccd{suffix}", planes())
    if suffix.endswith(".fz"):
        with fits.open(path) as hdul:
            assert isinstance(hdul["SCI"], fits.CompImageHDU)
    got = read_planes(path)
    for name, values in planes().items():
        np.testing.assert_array_equal(got[name], values)


def test_image_without_weight_is_refused(tmp_path):
    p = planes()
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(p["SCI"], name="SCI"),
                  fits.ImageHDU(p["MSK"], name="MSK")]).writeto(tmp_path / "x.fits")
    with pytest.raises(StampError, match=r"x.fits: missing HDU\(s\) WGT"):
        read_planes(tmp_path / "x.fits")


@pytest.fixture(scope="module")
def survey(tmp_path_factory):
    from smp_model.simulation.detection import simulate_detection
    out = tmp_path_factory.mktemp("survey")
    return out, simulate_detection(out, seed=5, ccd_images=True, flux=3000.0)


def test_discover_cutout_fit_reproduces_the_simulation(survey, tmp_path):
    """discover -> cutout on the simulator's CCD images gives back its stamps byte for
    byte and its manifest; the fit recovers the true flux."""
    out, truth = survey
    common = ["--ra", repr(truth.ra), "--dec", repr(truth.dec), "--band", "r"]

    def smp(*args):
        result = subprocess.run([sys.executable, "-m", "smp_model.cli", *map(str, args)],
                                capture_output=True, text=True, timeout=180, cwd=REPO)
        assert result.returncode == 0, result.stderr
        return result

    smp("discover", "--exposures", out / "exposures.ecsv", "--psfs", out / "psfs",
        "--out", tmp_path / "found.ecsv", *common)
    smp("cutout", tmp_path / "found.ecsv", "--images", out / "images", "--psfs", out / "psfs",
        "--zeropoints", out / "zeropoints.ecsv", "--stamps", tmp_path / "stamps",
        "--write-manifest", tmp_path / "cut.toml", "--name", truth.name,
        "--expnum", truth.detection_expnum, "--ccdnum", truth.detection_ccdnum, *common)
    shipped = DetectionManifest.read(out / "detection.toml")
    cut = DetectionManifest.read(tmp_path / "cut.toml")
    assert len(cut.exposures) == len(shipped.exposures) == len(truth.exposures)
    for a, b in zip(cut.exposures, shipped.exposures):
        assert (a.expnum, a.ccdnum, a.stamp_origin, a.zeropoint) == \
            (b.expnum, b.ccdnum, b.stamp_origin, b.zeropoint)
        assert a.stamp.read_bytes() != b"" and a.stamp != b.stamp
        with fits.open(a.stamp) as x, fits.open(b.stamp) as y:
            for name in ("SCI", "MSK", "WGT"):
                np.testing.assert_array_equal(x[name].data, y[name].data)
                assert x[name].data.dtype == y[name].data.dtype
    from smp_model import DetectionPhotometry
    fit = DetectionPhotometry(cut).fit_single()
    reference = DetectionPhotometry(shipped).fit_single()
    assert fit.flux == pytest.approx(reference.flux, rel=1e-9)
    assert abs(fit.flux - truth.sources[0].flux) < 3 * fit.flux_err


def test_cli_missing_detection_image_is_one_line(survey, tmp_path):
    out, truth = survey
    found = tmp_path / "found.ecsv"
    from astropy.table import Table
    Table({"expnum": [truth.detection_expnum], "ccdnum": [truth.detection_ccdnum],
           "band": ["r"]}).write(found)
    result = subprocess.run([sys.executable, "-m", "smp_model.cli", "cutout", str(found),
                             "--images", str(tmp_path / "nothing"), "--psfs",
                             str(out / "psfs"), "--zeropoints", str(out / "zeropoints.ecsv"),
                             "--stamps", str(tmp_path / "s"), "--write-manifest",
                             str(tmp_path / "m.toml"), "--name", "x", "--ra", repr(truth.ra),
                             "--dec", repr(truth.dec), "--band", "r", "--expnum",
                             str(truth.detection_expnum), "--ccdnum",
                             str(truth.detection_ccdnum)],
                            capture_output=True, text=True, timeout=60, cwd=REPO)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "no CCD image of the detection exposure" in lines[0]
    assert not (tmp_path / "m.toml").exists()
