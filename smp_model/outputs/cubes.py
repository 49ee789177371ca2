"""FITS cubes of a fit: one image HDU per exposure and quantity (image, model, residual,
target, weight, mask) with BUNIT and a TAN-SIP WCS fitted to the exposure's WCS over the
stamp, the flux table and a per-exposure table, all from the fit's one record.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from astropy.io import fits

from ..files import atomic_output
from ..fit.diagnostics import exposure_diagnostics
from ..fit.results import SceneFit
from .columns import NJY_PER_COUNT
from .record import fit_record
from .tables import flat_meta, set_card, table_hdu

__all__ = ["CUBE_QUANTITIES", "stamp_wcs_header", "write_fits"]

#: Image HDUs of the cube file, per exposure: (EXTNAME, BUNIT, what).
CUBE_QUANTITIES = (
    ("IMAGE", "ct", "calibrated stamp on zeropoint 30, masked pixels as stored"),
    ("MODEL", "ct", "full scene model on zeropoint 30"),
    ("RESIDUAL", "ct", "image - model (see MASK for the pixels the fit ignored)"),
    ("TARGET", "ct", "fitted target part of the model"),
    ("WEIGHT", "ct-2", "inverse variance on zeropoint 30 (0 = not used)"),
    ("MASK", "", "1 = pixel not used by the fit (MSK != 0, WGT == 0 or not finite)"),
)


# Sky-to-stamp WCS of each cube HDU: TAN-SIP of this degree fitted to the exposure's WCS
# on a grid of this many points per axis over the stamp.  DES WCSs are lookup tables
# (tree rings, CCD edges) with kinks every few pixels that no polynomial follows exactly:
# over 30 px the fit is good to ~0.005 px typically and 0.06 px near a CCD edge, so it
# is also anchored to be exact at the target (the point a user overlays).
_WCS_FIT_POINTS = 15


_WCS_SIP_DEGREE = 5


def write_fits(fit: SceneFit, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """FITS file of every fitted exposure's stamps, one image HDU per exposure and
    quantity (`CUBE_QUANTITIES`; EXTNAME = quantity, EXTVER = exposure number in the
    fit, 1-based, with EXPNUM/CCDNUM), each with BUNIT and a celestial TAN-SIP WCS of its
    stamp, so that DS9 (``ds9 -mecube``) and astropy place sky positions on the stamp;
    then tables SOURCES (the flux table) and EXPOSURES (`exposure_diagnostics`, order of
    EXTVER).  The arrays are the five panels' (`smp_model.fit.panels`): one residual
    definition everywhere, masked pixels kept and marked in MASK."""
    from ..fit.panels import five_panels
    scene = fit.scene
    record = fit_record(fit)
    primary = fits.PrimaryHDU()
    hdr = primary.header
    for key, value in flat_meta(record.output_meta()).items():
        set_card(hdr, key, value)
    hdr["MAGZERO"] = (30.0, "zeropoint of the ct unit (AB)")
    hdr["PHOTFNU"] = (NJY_PER_COUNT * 1e-9, "Jy per ct")
    hdr["NEXPOSUR"] = (len(scene.exposures), "exposures (EXTVER 1..N)")
    hdus = [primary]
    for m, ex in enumerate(scene.exposures):
        panels = five_panels(fit, m)
        wcs_header, residual_px = stamp_wcs_header(ex)
        arrays = {"IMAGE": panels["image"], "MODEL": panels["model"],
                  "RESIDUAL": panels["residual"], "TARGET": fit.target_model[m],
                  "WEIGHT": ex.weight, "MASK": (~panels.usable).astype(np.uint8)}
        for name, bunit, what in CUBE_QUANTITIES:
            data = arrays[name]
            hdu = fits.ImageHDU(data if name == "MASK" else data.astype(np.float32),
                                header=wcs_header.copy(), name=name, ver=m + 1)
            if bunit:
                hdu.header["BUNIT"] = (bunit, "ct = counts on zeropoint 30")
            hdu.header["EXPNUM"] = ex.entry.expnum
            hdu.header["CCDNUM"] = ex.entry.ccdnum
            hdu.header["DETECTN"] = (m == scene.detection_index, "the detection exposure")
            hdu.header["CCDX0"] = (ex.origin[0], "CCD x of stamp pixel (1, 1)")
            hdu.header["CCDY0"] = (ex.origin[1], "CCD y of stamp pixel (1, 1)")
            hdu.header["WCSFITRS"] = (residual_px, "max |TAN-SIP - exposure WCS|, px")
            hdu.header["COMMENT"] = what
            hdus.append(hdu)
    sources = table_hdu(record.table())
    sources.name = "SOURCES"
    exposures = fits.table_to_hdu(exposure_diagnostics(fit))
    exposures.name = "EXPOSURES"
    hdus += [sources, exposures]
    with atomic_output(path, overwrite) as tmp:
        fits.HDUList(hdus).writeto(tmp, overwrite=True)
    return Path(path)


def stamp_wcs_header(ex) -> tuple[fits.Header, float]:
    """Celestial WCS of a loaded exposure's stamp (FITS pixel (1, 1) = stamp ``[0, 0]`` =
    CCD ``origin``): a TAN-SIP fitted with astropy to the exposure's own WCS at points
    over the stamp and anchored at the target, and the largest pixel residual of that fit
    over a finer check grid."""
    from astropy.coordinates import SkyCoord
    from astropy.wcs import WCS
    from astropy.wcs.utils import fit_wcs_from_points
    ny, nx = ex.shape
    x0, y0 = ex.origin

    def grid(n):
        gx, gy = np.meshgrid(np.linspace(0.5, nx + 0.5, n), np.linspace(0.5, ny + 0.5, n))
        return gx.ravel(), gy.ravel()

    fx, fy = grid(_WCS_FIT_POINTS)          # FITS pixels of the stamp HDU (1-based)
    ra, dec = ex.pixel_to_sky(x0 - 1 + fx, y0 - 1 + fy)
    # fit_wcs_from_points works in 0-based pixels whatever its docstring says (checked
    # by the residual below and by tests/test_results.py).
    wcs = fit_wcs_from_points((fx - 1, fy - 1), SkyCoord(ra, dec, unit="deg"),
                              projection="TAN", sip_degree=_WCS_SIP_DEGREE)
    # Anchor at the target: move CRPIX so that its sky position maps onto its pixel.
    tx, ty = ex.target_xy[0] - x0 + 1, ex.target_xy[1] - y0 + 1
    tra, tdec = ex.pixel_to_sky(ex.target_xy[0], ex.target_xy[1])
    for _ in range(2):
        px, py = wcs.all_world2pix(tra, tdec, 1)
        wcs.wcs.crpix = wcs.wcs.crpix - [float(px) - tx, float(py) - ty]
    cx, cy = grid(2 * _WCS_FIT_POINTS + 1)
    cra, cdec = ex.pixel_to_sky(x0 - 1 + cx, y0 - 1 + cy)
    px, py = wcs.all_world2pix(cra, cdec, 1)
    residual = float(np.max(np.hypot(px - cx, py - cy)))
    header = WCS(wcs.to_header(relax=True)).to_header(relax=True)
    return header, residual
