"""The registry of the flux table: every column (unit, description) and every flag bit
(name, meaning), in one place that the tables, their metadata, the docs and the survey
view all read (as photutils keeps its PSF flags).

Fluxes are counts on the common zeropoint 30; ``flux_njy`` the same in nJy
(`NJY_PER_COUNT`); magnitudes are AB.
"""
from __future__ import annotations

from dataclasses import dataclass

import astropy.units as u
from astropy.table import QTable, Table

from ..inputs.stamps import COMMON_ZEROPOINT

__all__ = ["AB_DESCRIPTION", "COLUMNS", "EXPOSURE_COLUMNS", "FIT_COLUMNS", "FLAGS", "FLAG_BITS",
           "NJY_PER_COUNT", "RETIRED_FLAGS", "Column", "Flag", "ab_magnitudes", "decode_flags",
           "flags_description", "flags_meta", "plain_magnitudes"]

#: nJy per count on the common zeropoint (AB: a source of 3631 Jy has magnitude 0).
NJY_PER_COUNT = 3631.0 * 10 ** (-0.4 * COMMON_ZEROPOINT) * 1e9


@dataclass(frozen=True)
class Flag:
    """One bit of the ``flags`` column."""

    bit: int
    name: str
    meaning: str


FLAGS = (
    Flag(1, "nonpositive_flux", "flux <= 0: the magnitude is undefined; quote mag_limit_3sigma"),
    Flag(4, "position_err_undefined", "position fitted but the chi2 curvature is not "
         "positive-definite: position errors and flux_err_total are undefined"),
    Flag(8, "unresolved", "binary whose components the data cannot separate (delta_chi2 "
         "< 25, separation < 10 sigma or its first-order bias > 0.5 sigma): quote "
         "total_flux +- total_flux_err"),
    Flag(16, "exposure_dropped", "an exposure of the manifest had no usable pixel and was "
         "left out (meta exposures_dropped)"),
)


FLAG_BITS = {f.name: f.bit for f in FLAGS}

#: Bits an older release set that no flag owns now.  Bit 2, ``position_fixed``, was set
#: on every fit at fixed positions: a fact, not a condition worth a look.
RETIRED_FLAGS = (
    Flag(2, "position_fixed", "retired: a fit at fixed positions is positions == fixed now; "
         "the survey reads older batch outputs' bit into that column and clears it"),
)


def decode_flags(value: int) -> tuple[str, ...]:
    """Names of the flags set in ``value``; bits no flag owns are named last, as
    ``"bits N"`` (their sum)."""
    value = int(value)
    names = tuple(f.name for f in FLAGS if value & f.bit)
    unknown = value & ~sum(f.bit for f in FLAGS)
    return names + (f"bits {unknown}",) if unknown else names


def flags_meta() -> dict[str, dict]:
    """Every bit, live and retired, as table metadata: name -> {bit, meaning}."""
    return {f.name: {"bit": f.bit, "meaning": f.meaning} for f in (*FLAGS, *RETIRED_FLAGS)}


def flags_description() -> str:
    return "; ".join(f"{f.bit}: {f.name} ({f.meaning})" for f in FLAGS)


@dataclass(frozen=True)
class Column:
    """A column of an output table: its unit (astropy unit name, or None), meaning and
    IVOA UCD (the VO's name for what a column measures, used by TOPCAT and Aladin to find
    positions and magnitudes; None where no UCD says more than the description)."""

    name: str
    unit: str | None
    description: str
    ucd: str | None = None


def _columns(*specs: tuple) -> dict[str, Column]:
    return {spec[0]: Column(*spec) for spec in specs}


#: Every column of the flux table, in table order.  Shot-noise and batch columns are
#: present only when the request asked for them.
COLUMNS = _columns(
    ("name", None, "object name", "meta.id;meta.main"),
    ("expnum", None, "detection exposure", "meta.id;obs"),
    ("ccdnum", None, "detection CCD", "meta.id;instr.det"),
    ("band", None, "filter", "meta.id;instr.filter"),
    ("mjd", "d", "start of the detection exposure, MJD (UTC); NaN when unknown", "time.start"),
    ("fit_kind", None, "single or binary"),
    ("positions", None, "fixed (offsets given, not fitted: dx_err, dy_err and "
     "flux_err_total are NaN) or searched (fitted, with their errors)"),
    ("component", None, "target, or primary (brighter after a search) / secondary"),
    ("flux", None, "flux on zeropoint 30 (counts)"),
    ("flux_err", None, "1-sigma flux error at fixed positions (published)"),
    ("flux_err_total", None, "1-sigma flux error including the fitted positions' "
     "uncertainty (NaN if positions were fixed)"),
    ("flux_njy", "nJy", "flux in nJy (1 count on zeropoint 30 = 3.631 nJy)", "phot.flux.density"),
    ("flux_njy_err", "nJy", "flux_err in nJy", "stat.error;phot.flux.density"),
    ("mag", "mag(AB)", "AB magnitude, 30 - 2.5 log10(flux); NaN when flux <= 0", "phot.mag"),
    ("mag_err", "mag", "1-sigma magnitude error from flux_err", "stat.error;phot.mag"),
    ("mag_limit_3sigma", "mag(AB)", "AB magnitude of 3 x flux_err", "phot.mag;stat.max"),
    ("x", "pix", "1-indexed CCD x of the source in the detection exposure"),
    ("y", "pix", "1-indexed CCD y of the source in the detection exposure"),
    ("dx", "pix", "offset from the target's WCS position, convention frame"),
    ("dy", "pix", "offset from the target's WCS position, convention frame"),
    ("dx_err", "pix", "1-sigma error of dx (NaN if not fitted)"),
    ("dy_err", "pix", "1-sigma error of dy (NaN if not fitted)"),
    ("ra", "deg", "ICRS right ascension of the source", "pos.eq.ra;meta.main"),
    ("dec", "deg", "ICRS declination of the source", "pos.eq.dec;meta.main"),
    ("chi2", None, "chi2 of the fit"),
    ("dof", None, "degrees of freedom"),
    ("chi2_single", None, "chi2 of one source treated as the binary was (searched when "
     "it was searched)"),
    ("delta_chi2", None, "chi2_single - chi2: evidence for a second source"),
    ("chi2_single_default", None, "chi2 of one source at the convention's default offset"),
    ("delta_chi2_default", None, "chi2_single_default - chi2 (the published definition)"),
    ("total_flux", None, "flux of the pair, zeropoint 30 (of an unresolved pair whose "
     "secondary lies beyond 3 px: of the best pair within 3 px)"),
    ("total_flux_err", None, "1-sigma error of total_flux (with the flux covariance and, "
     "when searched, the positions' uncertainty)"),
    ("total_flux_debiased", None, "total_flux less its first-order least-squares bias "
     "(searched pairs; the pair's flux to quote, with total_flux_err)"),
    ("separation", "pix", "separation of the pair"),
    ("separation_err", "pix", "1-sigma error of separation (NaN if positions fixed)"),
    ("separation_debiased", "pix", "separation less its first-order bias (searched pairs; "
     "the one to quote, with separation_err, when not unresolved)"),
    ("separation_arcsec", "arcsec", "separation of the pair on the sky", "pos.angDistance"),
    ("separation_arcsec_err", "arcsec", "1-sigma error of separation_arcsec"),
    ("position_angle", "deg", "position angle of the secondary, east of north", "pos.posAng"),
    ("position_angle_err", "deg", "1-sigma error of position_angle"),
    ("convention", None, "pixel convention (exact or legacy)"),
    ("grid_size", None, "grid sources per axis"),
    ("grid_step", "arcsec", "nominal grid step"),
    ("fit_sky", None, "one sky level per exposure fitted"),
    ("grid_sources_dropped", None, "grid sources that touch no usable pixel, fixed at 0 "
     "(meta conditioning)"),
    ("scene_modes_cut", None, "combinations of grid amplitudes the data do not constrain "
     "(eigenvalue below 1e-12 of the largest), fixed at 0 (meta conditioning)"),
    ("flags", None, flags_description(), "meta.code"),
    ("flux_sn", None, "flux refitted with the source's shot noise, zeropoint 30"),
    ("flux_err_sn", None, "1-sigma error of flux_sn"),
    ("mag_sn", "mag(AB)", "AB magnitude of flux_sn", "phot.mag"),
    ("mag_err_sn", "mag", "1-sigma error of mag_sn", "stat.error;phot.mag"),
    ("binary_delta_chi2", None, "delta chi2 of the binary search run for this detection "
     "(kept when above the batch threshold)"),
)


#: Columns that describe the whole fit, the same in every row of it.
FIT_COLUMNS = ("name", "expnum", "ccdnum", "band", "mjd", "fit_kind", "positions", "chi2",
               "dof", "chi2_single", "delta_chi2", "chi2_single_default", "delta_chi2_default",
               "total_flux", "total_flux_err", "total_flux_debiased", "separation",
               "separation_err", "separation_debiased", "separation_arcsec",
               "separation_arcsec_err", "position_angle", "position_angle_err", "convention",
               "grid_size", "grid_step",
               "fit_sky", "grid_sources_dropped", "scene_modes_cut", "binary_delta_chi2")


#: Columns of the per-exposure table (`smp_model.fit.diagnostics.diagnostic_columns`) as the
#: cube's EXPOSURES extension writes them.
EXPOSURE_COLUMNS = _columns(
    ("expnum", None, "exposure", "meta.id;obs"),
    ("ccdnum", None, "CCD of the stamp", "meta.id;instr.det"),
    ("band", None, "filter", "meta.id;instr.filter"),
    ("zeropoint", "mag", "zeropoint (AB) of the stamp's own counts", "phot.mag;arith.zp"),
    ("is_detection", None, "the detection exposure"),
    ("x0", "pix", "1-indexed CCD x of stamp pixel [0, 0] (FITS pixel (1, 1) of the HDUs)"),
    ("y0", "pix", "1-indexed CCD y of stamp pixel [0, 0] (FITS pixel (1, 1) of the HDUs)"),
    ("target_x", "pix", "1-indexed CCD x of the target's sky position"),
    ("target_y", "pix", "1-indexed CCD y of the target's sky position"),
    ("n_usable", None, "pixels the fit used"),
    ("usable_fraction", None, "fraction of the stamp's pixels the fit used"),
    ("chi2", None, "chi2 of the exposure's usable pixels"),
    ("chi2_per_pixel", None, "chi2 / n_usable"),
    ("sky", "ct", "fitted sky level, counts on zeropoint 30 (NaN when not fitted)"),
    ("max_abs_residual_sigma", None, "largest abs(image - model) / sigma"),
    ("worst_pixels", None, "0-indexed stamp pixels j,i of the largest abs(residual) / sigma, "
     "';'-separated"),
    ("outlier", None, "chi2 per pixel above the exposures' median by more than 5 sigma of "
     "chi2 statistics"),
)


#: How AB magnitudes are carried where a file format has no AB unit (FITS, VOTable): unit
#: ``mag`` and a description that begins with these words.
AB_DESCRIPTION = "AB magnitude"


def plain_magnitudes(table: Table) -> Table:
    """A copy of ``table`` as plain columns, its AB-magnitude columns (astropy ``mag(AB)``)
    with unit ``mag`` and a description beginning with `AB_DESCRIPTION`: the form FITS
    (TUNIT, TCOMM) and VOTable (unit, DESCRIPTION) accept."""
    out = Table(table, meta=dict(table.meta), copy=True)
    for name in out.colnames:
        column = out[name]
        if isinstance(column.unit, u.MagUnit) and column.unit.physical_unit == u.AB:
            column.unit = u.mag
            text = column.info.description or ""
            if not text.startswith(AB_DESCRIPTION):
                column.info.description = f"{AB_DESCRIPTION}: {text}".rstrip(": ")
    return out


def ab_magnitudes(table: Table) -> QTable:
    """``table`` read back from FITS or VOTable as a `QTable`, the columns in ``mag``
    whose description begins with `AB_DESCRIPTION` in astropy's ``mag(AB)`` again
    (`plain_magnitudes` undone)."""
    out = QTable(table)
    for name in out.colnames:
        column = out[name]
        if column.unit == u.mag and (column.info.description or "").startswith(AB_DESCRIPTION):
            description = column.info.description
            out[name] = u.Magnitude(column.value, u.ABmag)
            out[name].info.description = description
    return out
