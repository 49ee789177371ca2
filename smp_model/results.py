"""Fit results as tables, FITS cubes and DS9 region files.

The flux table follows photutils: an astropy `QTable` with one row per fitted source,
``_err`` columns, units, a ``flags`` column and ``meta`` holding every setting needed to
repeat the fit, all from the fit's one record (`smp_model.record`).  It is written
through astropy's registry (ECSV, FITS, CSV).  Fluxes are on the common zeropoint 30
(``mag = 30 - 2.5 log10 flux``, AB), with ``flux_njy`` in nJy.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.io import fits
from astropy.table import QTable, Table

from .diagnostics import exposure_diagnostics
from .fit import SceneFit
from .io_utils import TABLE_FORMATS, atomic_output
from .record import COLUMNS, NJY_PER_COUNT, FitRecord, fit_record

def fit_table(fit: SceneFit) -> QTable:
    """The flux table of ``fit``: one row per target source (`smp_model.record`)."""
    return fit_record(fit).table()


def record_table(record: FitRecord) -> QTable:
    """A `FitRecord` as a `QTable`: the columns of `COLUMNS` with their units and
    descriptions, ``meta`` = the record's metadata."""
    names = record.columns
    table = QTable(rows=[[row[n] for n in names] for row in record.rows], names=names,
                   meta=record.output_meta())
    for name in names:
        column = COLUMNS[name]
        if column.unit is not None:
            table[name] = table[name] * u.Unit(column.unit)   # QTable: Quantity columns
        table[name].info.description = column.description
    return table


def table_format(path: str | os.PathLike, format: str | None = None) -> str:
    """astropy format name for ``path`` (by extension unless given)."""
    if format:
        return format
    suffix = Path(path).suffix.lower()
    try:
        return TABLE_FORMATS[suffix]
    except KeyError:
        raise ValueError(f"{path}: unknown table format {suffix!r}; use one of "
                         f"{', '.join(sorted(TABLE_FORMATS))}") from None


def write_table(fit_or_table: SceneFit | Table, path: str | os.PathLike,
                format: str | None = None, overwrite: bool = False) -> Path:
    """Write the flux table (ECSV, FITS or CSV by extension); atomic, no silent overwrite.
    FITS headers cannot hold nested meta, so it is stored there as flattened keywords."""
    table = fit_table(fit_or_table) if isinstance(fit_or_table, SceneFit) else fit_or_table
    fmt = table_format(path, format)
    out = table.copy()
    if fmt == "fits":
        # Build the header ourselves: astropy would warn once per long meta key.
        out.meta = {}
        hdu = table_hdu(out)
        for key, value in _flat_meta(table.meta).items():
            _set_card(hdu.header, key, value)
        with atomic_output(path, overwrite) as tmp:
            fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(tmp, overwrite=True)
        return Path(path)
    if fmt == "ascii.csv":
        out.meta = {}
    with atomic_output(path, overwrite) as tmp:
        out.write(tmp, format=fmt, overwrite=True)
    return Path(path)


def table_hdu(table: Table) -> fits.BinTableHDU:
    """A table as a FITS HDU.  FITS has no AB-magnitude unit: such columns are written
    with TUNIT ``mag`` and say "AB" in their description (TCOMM), not with a warning."""
    out = Table(table, meta={}, copy=True)   # plain columns: units kept on the columns
    for name in out.colnames:
        unit = out[name].unit
        if isinstance(unit, u.MagUnit):
            out[name].unit = u.mag
            out[name].info.description = f"{out[name].info.description or ''} [AB]".strip()
    return fits.table_to_hdu(out)


def _flat_meta(meta: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in meta.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flat_meta(value, f"{name}_"))
        elif isinstance(value, (list, tuple)) and value and isinstance(value[0], dict):
            for n, item in enumerate(value):
                flat.update(_flat_meta(item, f"{name}_{n}_"))
        elif isinstance(value, (list, tuple)):
            flat[name] = ",".join(str(v) for v in value)
        elif value is not None:
            flat[name] = value
    return flat


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
    EXTVER).  The arrays are the five panels' (`smp_model.panels`): one residual
    definition everywhere, masked pixels kept and marked in MASK."""
    from .panels import five_panels
    scene = fit.scene
    record = fit_record(fit)
    primary = fits.PrimaryHDU()
    hdr = primary.header
    for key, value in _flat_meta(record.output_meta()).items():
        _set_card(hdr, key, value)
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


def write_regions(fit: SceneFit, path: str | os.PathLike, overwrite: bool = False,
                  radius_arcsec: float = 1.0) -> Path:
    """DS9 region file (fk5, J2000) of the fit: a circle of ``radius_arcsec`` at each fitted
    source (text = its component name) and the outline of the background grid (a
    polygon through its corner sources), written with the ``regions`` package."""
    from regions import CircleSkyRegion, PolygonSkyRegion, Regions

    record = fit_record(fit)
    shapes = []
    for row in record.rows:
        circle = CircleSkyRegion(_fk5(row["ra"], row["dec"]), radius=radius_arcsec * u.arcsec)
        circle.meta["text"] = row["component"]
        shapes.append(circle)
    n = fit.settings.grid_size
    ra, dec = (np.asarray(a).reshape(n, n) for a in (fit.scene.grid_ra, fit.scene.grid_dec))
    corners = [(0, 0), (0, n - 1), (n - 1, n - 1), (n - 1, 0)]
    outline = PolygonSkyRegion(_fk5([ra[c] for c in corners], [dec[c] for c in corners]))
    outline.meta["text"] = f"{n}x{n} grid"
    shapes.append(outline)
    text = Regions(shapes).serialize(format="ds9")
    with atomic_output(path, overwrite) as tmp:
        Path(tmp).write_text(text)
    return Path(path)


def _fk5(ra, dec):
    """ICRS degrees as FK5 (J2000) coordinates, the frame DS9 users expect."""
    from astropy.coordinates import FK5, SkyCoord
    return SkyCoord(ra, dec, unit="deg", frame="icrs").transform_to(FK5(equinox="J2000"))


def _set_card(header: fits.Header, key: str, value) -> None:
    """Meta entries become ``HIERARCH SMP <key>`` cards (long strings continue over CONTINUE
    cards); values that cannot be cards become text."""
    if isinstance(value, (bool, int, float, str, np.integer, np.floating)):
        if isinstance(value, float) and not math.isfinite(value):
            value = str(value)
        card_value = value
    else:
        card_value = str(value)
    header[f"HIERARCH SMP {key}"] = card_value
