"""Exposure discovery through the destnosim-shaped interface, with a fake survey."""
import numpy as np
import pytest

from smp_model.inputs.discovery import (DestnosimExposures, ExposureRef, ExposureSource,
                                        exposures_for_detection)
from smp_model.inputs.folder import manifest_from_folder
from smp_model.inputs.manifest import DetectionManifest


class FakeExposure:
    """Covers the target with one CCD when its pointing is within 0.5 deg of it."""

    def __init__(self, ra, dec, ccd):
        self.ra, self.dec, self.ccd = ra, dec, ccd
        self.calls = 0

    def checkInCCDFast(self, ra, dec, ccdsize):
        self.calls += 1
        assert ccdsize == pytest.approx(0.149931)
        d = np.hypot((ra[0] - self.ra) * np.cos(np.radians(dec[0])), dec[0] - self.dec)
        return (True, self.ccd) if d < 0.5 else (False, None)


class FakeSurvey:
    def __init__(self, rows):
        self.expnum = np.array([r[0] for r in rows])
        self.ra = np.array([r[1] for r in rows])
        self.dec = np.array([r[2] for r in rows])
        self.band = np.array([r[3] for r in rows])
        self._exp = {r[0]: FakeExposure(r[1], r[2], r[4]) for r in rows}

    def __getitem__(self, expnum):
        return self._exp[expnum]


RA, DEC = 25.62472153, -3.41797168


def test_finds_exposures_that_contain_the_position_and_skips_far_pointings():
    survey = FakeSurvey([
        (1, RA + 0.2, DEC, "Y", 20),          # near, covers
        (2, RA, DEC + 0.8, "Y", 11),          # near enough to test, CCD test says no
        (3, RA + 5.0, DEC, "Y", 4),           # far: never asked
        (4, RA - 0.1, DEC - 0.1, "r", 7),     # covers, other band
    ])
    source = DestnosimExposures(survey)
    assert isinstance(source, ExposureSource)
    assert source.exposures_containing(RA, DEC) == [ExposureRef(1, 20, "Y"),
                                                    ExposureRef(4, 7, "r")]
    assert survey[3].calls == 0
    assert exposures_for_detection(source, RA, DEC, band="Y") == [ExposureRef(1, 20, "Y")]


def test_discovered_exposures_restrict_the_folder_input(des_sample):
    refs = [ExposureRef(384049, 11, "Y"), ExposureRef(706447, 49, "Y")]
    m = manifest_from_folder(des_sample / "eris" / "stamps", des_sample / "psfs",
                             des_sample / "zeropoints.ecsv", name="eris", ra=RA, dec=DEC,
                             band="Y", expnum=234928, ccdnum=20, exposures=refs)
    assert [e.expnum for e in m.exposures] == [234928, 384049, 706447]
    shipped = {e.expnum: e for e in
               DetectionManifest.read(des_sample / "eris" / "detection.toml").exposures}
    for e in m.exposures:
        assert e.stamp_origin == shipped[e.expnum].stamp_origin
        assert e.psf == shipped[e.expnum].psf
