"""Truth test on real data: a point source of known flux, drawn with the real Piff PSF of
an exposure, is added to that exposure's real stamp; the exposure is relabelled as the
detection (the real detection exposure, which holds the real moving target, is left out)
and the fit must recover the injected flux within its reported error.

The injection is independent of the engine: Piff's own ``draw`` on the stamp grid
(``SCI[j, i]`` = CCD ``(x0 + i, y0 + j)``, docs/conventions.rst), the zeropoint scale written out,
the sky position from galsim's forward WCS.  The sample is never modified: the changed
stamp is written to a temporary directory, and a new manifest there points at the rest.
"""
from __future__ import annotations

import math

import galsim
import piff
import pytest
from astropy.io import fits
from helpers import absolute_manifest_dict, write_toml

from smp_model.fit.photometry import DetectionPhotometry
from smp_model.settings import FitSettings

# (object, exposure to relabel as the detection, injected flux on ZP 30, CCD offset of the
# injected source from the object's position in that exposure).  Fluxes give S/N ~ 25-40.
INJECTIONS = [
    ("eris", 384049, 24000.0, (0.31, -0.27)),
    ("eris", 600470, 20000.0, (-0.42, 0.18)),
    ("2014vv39", 349362, 3000.0, (0.12, 0.44)),
    ("2014vv39", 784624, 2500.0, (-0.23, -0.35)),
]


def inject(des_sample, directory, name, expnum, flux_zp30, offset):
    """Write the modified stamp and the relabelled manifest; return (manifest path, CCD x,
    y of the injected source)."""
    doc = absolute_manifest_dict(des_sample / name / "detection.toml")
    real_detection = doc["detection"]["expnum"]
    doc["exposures"] = [e for e in doc["exposures"] if e["expnum"] != real_detection]
    entry = next(e for e in doc["exposures"] if e["expnum"] == expnum)
    psf = piff.PSF.read(entry["psf"])
    wcs = psf.wcs[next(iter(psf.wcs))]
    x = entry["target_xy"][0] + offset[0]
    y = entry["target_xy"][1] + offset[1]
    ra, dec = wcs.xyToradec(x, y, units="deg")
    with fits.open(entry["stamp"]) as hdul:
        hdul = fits.HDUList([h.copy() for h in hdul])
    sci = hdul["SCI"].data
    ny, nx = sci.shape
    x0, y0 = entry["stamp_origin"]
    unit = psf.draw(x, y, image=galsim.ImageD(nx, ny, xmin=x0, ymin=y0), center=(x, y)).array
    scale = 10.0 ** (-0.4 * (entry["zeropoint"] - 30.0))   # SCI -> ZP 30
    hdul["SCI"].data = (sci + flux_zp30 / scale * unit).astype(sci.dtype)
    stamp_path = directory / f"{name}_{expnum}_injected.fits"
    hdul.writeto(stamp_path)
    entry["stamp"] = str(stamp_path)
    doc.update(ra=float(ra), dec=float(dec),
               detection=dict(expnum=expnum, ccdnum=entry["ccdnum"]))
    return write_toml(directory / "detection.toml", doc), (x, y)


@pytest.fixture(scope="module", params=INJECTIONS, ids=lambda p: f"{p[0]}-{p[1]}")
def injected(request, des_sample, tmp_path_factory):
    name, expnum, flux, offset = request.param
    manifest, xy = inject(des_sample, tmp_path_factory.mktemp(f"{name}_{expnum}"), name,
                          expnum, flux, offset)
    return dict(manifest=manifest, flux=flux, xy=xy, expnum=expnum,
                phot=DetectionPhotometry(manifest, FitSettings(convention="exact")))


def test_injected_flux_is_recovered(injected):
    phot = injected["phot"]
    assert phot.manifest.detection_expnum == injected["expnum"]
    assert all(e.expnum != phot.manifest.detection_expnum or e.stamp.parent
               == injected["manifest"].parent for e in phot.manifest.exposures)
    fit = phot.fit_single()
    # The relabelled manifest puts the target on the injected CCD position.
    assert (fit.primary.x, fit.primary.y) == pytest.approx(injected["xy"], abs=1e-4)
    assert 15 < fit.primary.snr < 60
    pull = (fit.flux - injected["flux"]) / fit.flux_err
    assert abs(pull) < 3, f"pull {pull:.2f}"


def test_injected_position_is_recovered(injected):
    fit = injected["phot"].optimize_single()
    for offset, err in ((fit.primary.dx, fit.primary.dx_err), (fit.primary.dy, fit.primary.dy_err)):
        assert 0 < err < 0.2
        assert abs(offset) < 3 * err + 0.02
    assert abs(fit.flux - injected["flux"]) < 3 * fit.flux_err


def test_legacy_convention_recovers_it_too(injected):
    """Legacy draws in Piff's box, whose [0, 0] is CCD (ceil(x) - 15, ceil(y) - 15); the
    stamp here was cut around the real object, not the injected source, so the offset that
    puts the target on the source is box - stamp origin (-1 only when the DES rule holds
    for the source itself)."""
    phot = DetectionPhotometry(injected["manifest"], FitSettings(convention="legacy"))
    x, y = injected["xy"]
    x0, y0 = phot.manifest.detection_exposure.stamp_origin
    fit = phot.fit_single((math.ceil(x) - 15 - x0, math.ceil(y) - 15 - y0))
    assert (fit.primary.x, fit.primary.y) == pytest.approx(injected["xy"], abs=1e-4)
    assert abs(fit.flux - injected["flux"]) < 3 * fit.flux_err
