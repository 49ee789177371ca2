"""FITS cubes of a fit: one image HDU per exposure and quantity (image, model, residual,
target, weight, mask) with BUNIT and a TAN-SIP WCS of the stamp (`smp_model.outputs.stamp_wcs`),
the detection exposure first, then the flux table, a per-exposure table and the
provenance, all from the fit's one record.

DS9 opens the first image HDU of a file whose primary HDU is empty, with that HDU's own
WCS: ``ds9 cubes.fits -regions fit.reg`` shows the detection's image with the region
circles on their sources (`smp_model.outputs.clients.DS9_COMMAND`), and
``ds9 'cubes.fits[3]' -regions fit.reg`` its residual.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table

from ..fit.diagnostics import exposure_diagnostics
from ..fit.results import SceneFit
from .columns import EXPOSURE_COLUMNS, NJY_PER_COUNT
from .fits_tables import describe_header, provenance_hdu, table_hdu, write_hdus
from .record import fit_record
from .stamp_wcs import stamp_wcs

__all__ = ["CUBE_QUANTITIES", "cube_order", "write_fits"]

#: Image HDUs of the cube file, per exposure: (EXTNAME, BUNIT, what).
CUBE_QUANTITIES = (
    ("IMAGE", "ct", "calibrated stamp on zeropoint 30, masked pixels as stored"),
    ("MODEL", "ct", "full scene model on zeropoint 30"),
    ("RESIDUAL", "ct", "image - model (see MASK for the pixels the fit ignored)"),
    ("TARGET", "ct", "fitted target part of the model"),
    ("WEIGHT", "ct-2", "inverse variance on zeropoint 30 (0 = not used)"),
    ("MASK", "", "1 = pixel not used by the fit (MSK != 0, WGT == 0 or not finite)"),
)



def cube_order(fit: SceneFit) -> list[int]:
    """Indices into ``fit.scene.exposures`` in the order of the cube: the detection
    first (the HDUs a viewer opens by default), then the others in the fit's order."""
    detection = fit.scene.detection_index
    return [detection] + [m for m in range(len(fit.scene.exposures)) if m != detection]


def write_fits(fit: SceneFit, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """FITS file of every fitted exposure's stamps, one image HDU per exposure and
    quantity (`CUBE_QUANTITIES`; EXTNAME = quantity, EXTVER = the exposure's place in the
    cube, `cube_order`: 1 = the detection, so HDUs 1-6 are its IMAGE ... MASK), each with
    BUNIT, EXPNUM/CCDNUM and a celestial TAN-SIP WCS of its stamp; then tables SOURCES
    (the flux table), EXPOSURES (`exposure_diagnostics` with units, row k = EXTVER k + 1)
    and PROVENANCE (every setting, `provenance_hdu`).  The arrays are the five panels'
    (`smp_model.fit.panels`): one residual definition everywhere, masked pixels kept and
    marked in MASK."""
    record = fit_record(fit)
    meta = record.output_meta()
    primary = fits.PrimaryHDU()
    describe_header(primary.header, meta)
    primary.header["PHOTFNU"] = (NJY_PER_COUNT * 1e-9, "Jy per ct")
    primary.header["NEXPOSUR"] = (len(fit.scene.exposures),
                                  "exposures (EXTVER 1..N; 1 = the detection)")
    order = cube_order(fit)
    hdus = [primary]
    for extver, m in enumerate(order, start=1):
        hdus += _exposure_hdus(fit, m, extver)
    sources = table_hdu(record.table())
    sources.name = "SOURCES"
    exposures = table_hdu(_exposures_table(fit, order))
    exposures.name = "EXPOSURES"
    hdus += [sources, exposures, provenance_hdu(meta)]
    return write_hdus(hdus, meta, path, overwrite)


def _exposure_hdus(fit: SceneFit, m: int, extver: int) -> list[fits.ImageHDU]:
    """The image HDUs of exposure ``m`` (index into ``fit.scene.exposures``)."""
    from ..fit.panels import five_panels
    ex = fit.scene.exposures[m]
    panels = five_panels(fit, m)
    wcs = stamp_wcs(ex)
    arrays = {"IMAGE": panels["image"], "MODEL": panels["model"],
              "RESIDUAL": panels["residual"], "TARGET": fit.target_model[m],
              "WEIGHT": ex.weight, "MASK": (~panels.usable).astype(np.uint8)}
    hdus = []
    for name, bunit, what in CUBE_QUANTITIES:
        data = arrays[name]
        hdu = fits.ImageHDU(data if name == "MASK" else data.astype(np.float32),
                            header=wcs.header.copy(), name=name, ver=extver)
        header = hdu.header
        if bunit:
            header["BUNIT"] = (bunit, "ct = counts on zeropoint 30")
        header["EXPNUM"] = ex.entry.expnum
        header["CCDNUM"] = ex.entry.ccdnum
        header["DETECTN"] = (m == fit.scene.detection_index, "the detection exposure")
        if ex.entry.mjd is not None:
            header["MJD-OBS"] = (float(ex.entry.mjd), "[d] start of the exposure (UTC)")
        header["CCDX0"] = (ex.origin[0], "CCD x of stamp pixel (1, 1)")
        header["CCDY0"] = (ex.origin[1], "CCD y of stamp pixel (1, 1)")
        header["WCSFITRS"] = (wcs.residual_px, "max |TAN-SIP - exposure WCS|, px")
        if math.isfinite(wcs.inverse_residual_px):
            header["SIPINVRS"] = (wcs.inverse_residual_px, "max |AP,BP inverse - A,B|, px")
        header["COMMENT"] = what
        hdus.append(hdu)
    return hdus


def _exposures_table(fit: SceneFit, order: list[int]) -> Table:
    """`exposure_diagnostics` in cube order, with the units and descriptions of
    `EXPOSURE_COLUMNS`."""
    table = exposure_diagnostics(fit)[order]
    for name in table.colnames:
        column = EXPOSURE_COLUMNS.get(name)
        if column is not None:
            table[name].unit = column.unit
            table[name].info.description = column.description
    return table
