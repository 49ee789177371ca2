"""One record of a fit: the flat projection that every output reads.

`fit_record` turns a `SceneFit` into a `FitRecord`: one row per target source (plain
Python values, NaN where undefined) and the metadata of the run.  The flux table
(`FitRecord.table`), the CLI's JSON and text summaries, the GUI's flux table and the
figure captions are all views of it, so they cannot disagree.

Conventions (stated once, here and in each column's description):

* ``flux`` counts on the common zeropoint 30 (the published unit); ``flux_njy`` the same
  flux in nJy (AB: zeropoint 30 means 1 count = 10**(-0.4 (30 - 8.9)) Jy = 3.631 nJy).
* ``mag`` AB magnitude, ``30 - 2.5 log10(flux)``; NaN when ``flux <= 0`` (flag 1).
* offsets are pixels of the detection exposure from the target's WCS position, in the
  frame of the pixel convention; lists of offsets are in the published order
  (``dx1, dx2, dy1, dy2`` for a binary), named by ``offsets_order`` in the metadata.
* the error a user should quote is `quoted_flux_err`: ``flux_err_total`` when positions
  were searched (it includes their uncertainty), else ``flux_err``; for a binary flagged
  ``unresolved``, ``total_flux`` and ``total_flux_err``.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import astropy.units as u
import numpy as np
from astropy.table import QTable

from ..files import utc_timestamp
from ..fit.results import BinaryFit, SceneFit
from ..inputs.stamps import COMMON_ZEROPOINT
from .columns import COLUMNS, FIT_COLUMNS, FLAG_BITS, NJY_PER_COUNT, flags_meta

__all__ = ["FitRecord", "conditioning_text", "fit_record", "pair_text", "quoted_flux_err",
           "record_meta", "record_table", "source_text"]


@dataclass(frozen=True, eq=False)
class FitRecord:
    """The flat record of one fit: ``rows`` (one dict per source, keys in `COLUMNS`
    order) and `meta` (settings, request, exposures, provenance; computed on first use:
    its per-exposure diagnostics are more than an interactive refit needs)."""

    rows: tuple[dict, ...]
    fit: SceneFit

    @property
    def columns(self) -> list[str]:
        return list(self.rows[0])

    @property
    def kind(self) -> str:
        return self.rows[0]["fit_kind"]

    @property
    def offsets(self) -> tuple[float, ...]:
        """Target offsets in the published order ((dx, dy) or (dx1, dx2, dy1, dy2))."""
        return self.fit.target_offsets.published

    def fit_value(self, name: str):
        """A fit-wide column's value (the same in every row)."""
        return self.rows[0][name]

    @functools.cached_property
    def meta(self) -> dict:
        return record_meta(self.fit)

    def output_meta(self) -> dict:
        """`meta` for a file written now: ``created`` is the time of writing (the record
        of a fit is built once and may be written more than once)."""
        return dict(self.meta, created=utc_timestamp())

    def table(self):
        """The flux table: an astropy `QTable` with units, descriptions and `meta`."""
        from .record import record_table
        return record_table(self)

    def to_json(self) -> dict:
        """The ``--json`` document: the target's (or, for a binary, the primary's) numbers
        at top level with the fit-wide ones; for a binary also ``primary`` and
        ``secondary``; NaN written as null."""
        fit_wide = {k: _json(self.rows[0][k]) for k in self.columns if k in FIT_COLUMNS}
        sources = [{k: _json(v) for k, v in row.items() if k not in FIT_COLUMNS}
                   for row in self.rows]
        meta = self.meta
        common = {**fit_wide, "offsets": list(self.offsets),
                  "offsets_order": meta["offsets_order"],
                  "n_chi2_evaluations": meta["n_chi2_evaluations"],
                  "search_starts": meta["search_starts"],
                  "timings": {k: round(v, 6) for k, v in self.fit.timings.items()},
                  "exposures_used": meta["exposures_used"],
                  "dropped_exposures": meta["exposures_dropped"],
                  "shot_noise": meta["shot_noise"], "request": meta["request"],
                  "per_exposure": meta["per_exposure"],
                  "conditioning": {k: [_json(x) for x in v] if isinstance(v, list) else _json(v)
                                   for k, v in meta["conditioning"].items()}}
        if self.kind == "binary":
            return {**sources[0], "primary": sources[0], "secondary": sources[1], **common}
        return {**sources[0], **common}

    def text(self) -> str:
        """The plain-text summary ``smp fit`` prints."""
        r0 = self.rows[0]
        lines = [f"{r0['name']}: {r0['fit_kind']} fit, {r0['convention']} convention, "
                 f"chi2 = {r0['chi2']:.2f} / {r0['dof']} dof"]
        for row in self.rows:
            lines.append(f"  {row['component']}: {source_text(row)}")
            if "flux_sn" in row:
                lines.append(f"    with source shot noise: flux {row['flux_sn']:.2f} +- "
                             f"{row['flux_err_sn']:.2f}")
        if self.kind == "binary":
            lines.append("  " + pair_text(r0))
        if r0["grid_sources_dropped"] or r0["scene_modes_cut"]:
            lines.append("  " + conditioning_text(r0, float(max(self.fit.target_cut_share))))
        return "\n".join(lines)

    def caption(self) -> str:
        """Figure caption: object, fit and the errors a user should quote."""
        r0 = self.rows[0]
        parts = [f"{row['component']}: flux {row['flux']:.1f} ± "
                 f"{quoted_flux_err(row):.1f}, {_mag_text(row, '±')}" for row in self.rows]
        head = (f"{r0['name']} ({r0['band']}), {r0['convention']} convention, "
                f"χ²/dof = {r0['chi2']:.1f}/{r0['dof']}")
        if self.kind == "binary":
            parts.append(f"Δχ² = {r0['delta_chi2']:.1f}, total {r0['total_flux']:.1f} ± "
                         f"{r0['total_flux_err']:.1f}"
                         + (" (unresolved: quote the total)" if r0["flags"] & 8 else ""))
        return head + "\n" + "; ".join(parts)


def quoted_flux_err(row: dict) -> float:
    """The flux error to quote: with the positions' uncertainty when they were searched."""
    total = row["flux_err_total"]
    return total if math.isfinite(total) else row["flux_err"]


def _mag_text(row: dict, pm: str = "+-") -> str:
    if row["flux"] > 0:
        return f"mag {row['mag']:.4f} {pm} {row['mag_err']:.4f}"
    return f"mag > {row['mag_limit_3sigma']:.3f} (3 sigma)"


def source_text(row: dict) -> str:
    text = f"flux {row['flux']:.2f} +- {row['flux_err']:.2f} (ZP 30)"
    if math.isfinite(row["flux_err_total"]):
        text += f" [+- {row['flux_err_total']:.2f} with positions]"
    text += f", {_mag_text(row)}, offset ({row['dx']:+.3f}, {row['dy']:+.3f}) px"
    if math.isfinite(row["dx_err"]):
        text += f" +- ({row['dx_err']:.3f}, {row['dy_err']:.3f})"
    return text


def conditioning_text(row: dict, target_cut_share: float) -> str:
    """What the solve fixed at 0 because the data do not constrain it, and the share of the
    target flux's information that lay there (`smp_model.scene.conditioning`; empty when
    nothing was fixed)."""
    parts = []
    if row["grid_sources_dropped"]:
        parts.append(f"{row['grid_sources_dropped']} grid source(s) on no usable pixel "
                     "dropped")
    if row["scene_modes_cut"]:
        parts.append(f"{row['scene_modes_cut']} unconstrained scene direction(s) cut")
    return (f"scene: {', '.join(parts)} (fixed at 0; {100 * target_cut_share:.2g} % of the "
            "target flux's information lay in them)" if parts else "")


def pair_text(row: dict) -> str:
    text = (f"delta chi2 = {row['delta_chi2']:.2f} (single at the default offset: "
            f"{row['delta_chi2_default']:.2f}); total flux {row['total_flux']:.2f} +- "
            f"{row['total_flux_err']:.2f}; separation {row['separation']:.3f} px = "
            f"{row['separation_arcsec']:.3f} arcsec, PA {row['position_angle']:.1f} deg")
    if row["flags"] & FLAG_BITS["unresolved"]:
        text += "; unresolved: quote the total flux"
    return text


# One record per fit object: `smp fit` writes a table, cubes and JSON of one fit, and each
# would otherwise build the record and its per-exposure metadata again.  Fits are
# immutable, so the record cannot go stale.  It is kept in the fit's own __dict__ (as
# functools.cached_property does on the frozen dataclass): the record refers to its fit,
# so a weak-keyed cache would keep every fit, its scene and its design matrix (~100 MB)
# alive for the life of the process (a batch worker, the stress run, the GUI).
_RECORD_ATTRIBUTE = "_fit_record"


def fit_record(fit: SceneFit) -> FitRecord:
    """The record of ``fit`` (cheap: what a fit at fixed positions already has; built once
    per fit object, freed with it)."""
    record = fit.__dict__.get(_RECORD_ATTRIBUTE)
    if record is None:
        record = fit.__dict__[_RECORD_ATTRIBUTE] = _build_record(fit)
    return record


def _build_record(fit: SceneFit) -> FitRecord:
    manifest, settings = fit.manifest, fit.settings
    binary = isinstance(fit, BinaryFit)
    mjd = manifest.mjd
    fit_wide = {
        "name": manifest.name, "expnum": manifest.detection_expnum,
        "ccdnum": manifest.detection_ccdnum, "band": manifest.band,
        "mjd": float(mjd) if mjd is not None else math.nan, "fit_kind": fit.kind,
        "positions": "fixed" if fit.position_covariance is None else "searched",
        "chi2": float(fit.chi2), "dof": int(fit.dof),
        **_pair_values(fit if binary else None),
        "convention": settings.convention, "grid_size": settings.grid_size,
        "grid_step": settings.grid_step_arcsec, "fit_sky": settings.fit_sky,
        "grid_sources_dropped": len(fit.scene.conditioning.dropped_grid_sources),
        "scene_modes_cut": fit.scene.conditioning.modes_cut,
    }
    names = ("primary", "secondary") if binary else ("target",)
    fit_flags = ((FLAG_BITS["unresolved"] if binary and fit.unresolved else 0)
                 | (FLAG_BITS["exposure_dropped"] if fit.dropped_expnums else 0))
    rows = []
    for t, (component, s) in enumerate(zip(names, fit.sources)):
        row = {
            "component": component, "flux": s.flux, "flux_err": s.flux_err,
            "flux_err_total": s.flux_err_total, "flux_njy": s.flux * NJY_PER_COUNT,
            "flux_njy_err": s.flux_err * NJY_PER_COUNT, "mag": s.mag, "mag_err": s.mag_err,
            "mag_limit_3sigma": s.mag_limit_3sigma, "x": s.x, "y": s.y, "dx": s.dx,
            "dy": s.dy, "dx_err": s.dx_err, "dy_err": s.dy_err, "ra": s.ra, "dec": s.dec,
            "flags": _source_flags(fit, s) | fit_flags}
        if fit.shot_noise is not None:
            sn = fit.shot_noise
            row.update(flux_sn=sn.flux[t], flux_err_sn=sn.flux_err[t], mag_sn=sn.mag[t],
                       mag_err_sn=sn.mag_err[t])
        if fit.request is not None and fit.request.binary_search_if is not None:
            row["binary_delta_chi2"] = float(fit.binary_search_delta_chi2)
        row.update(fit_wide)
        rows.append({name: row[name] for name in COLUMNS if name in row})
    return FitRecord(rows=tuple(rows), fit=fit)


def _pair_values(fit: BinaryFit | None) -> dict:
    names = ("chi2_single", "delta_chi2", "chi2_single_default", "delta_chi2_default",
             "total_flux", "total_flux_err", "total_flux_debiased", "separation",
             "separation_err", "separation_debiased", "separation_arcsec",
             "separation_arcsec_err", "position_angle", "position_angle_err")
    if fit is None:
        return dict.fromkeys(names, math.nan)
    values = (fit.chi2_single, fit.delta_chi2, fit.chi2_single_default,
              fit.delta_chi2_default, fit.total_flux, fit.total_flux_err,
              fit.total_flux_debiased, fit.separation_px,
              fit.separation_err_px, fit.separation_debiased_px, fit.separation_arcsec,
              fit.separation_err_arcsec, fit.position_angle_deg, fit.position_angle_err_deg)
    return {k: float(v) for k, v in zip(names, values)}


def _source_flags(fit: SceneFit, s) -> int:
    flags = 0
    if not s.flux > 0:
        flags |= FLAG_BITS["nonpositive_flux"]
    if fit.position_covariance is not None and not np.all(np.isfinite([s.dx_err, s.dy_err])):
        flags |= FLAG_BITS["position_err_undefined"]
    return flags


def record_meta(fit: SceneFit) -> dict:
    """Everything that determines the fit and where it came from (offsets in the
    published order)."""
    from .. import __version__
    from ..fit.diagnostics import diagnostics_records
    manifest = fit.manifest
    offsets = fit.target_offsets
    return {
        "software": f"smp-inspector {__version__}",
        "created": utc_timestamp(),
        "manifest": str(manifest.path) if manifest.path else None,
        "name": manifest.name, "ra": manifest.ra, "dec": manifest.dec,
        "band": manifest.band, "color_gi": manifest.color_gi, "mjd": manifest.mjd,
        "detection_expnum": manifest.detection_expnum,
        "detection_ccdnum": manifest.detection_ccdnum,
        "fit_kind": fit.kind,
        "offsets": list(offsets.published),
        "offsets_order": ",".join(offsets.published_names),
        "request": fit.request.as_meta() if fit.request is not None else None,
        "settings": fit.settings.as_meta(),
        "zeropoint": COMMON_ZEROPOINT,
        "flux_unit": f"counts on zeropoint {COMMON_ZEROPOINT:g} (1 count = "
                     f"{NJY_PER_COUNT:.4f} nJy)",
        "exposures_used": fit.used_expnums,
        "exposures_dropped": fit.dropped_expnums,
        "condition_number": fit.scene.condition_number,
        "conditioning": {**fit.scene.conditioning.as_meta(),
                         "target_cut_share": [float(v) for v in fit.target_cut_share]},
        "n_chi2_evaluations": fit.n_chi2_evaluations,
        "search_starts": fit.search_starts,
        "shot_noise": (None if fit.shot_noise is None else
                       {"gain": fit.shot_noise.gain, "iterations": fit.shot_noise.iterations}),
        "flags": flags_meta(),
        "per_exposure": diagnostics_records(fit),
    }



def _json(value):
    """JSON has no NaN: undefined numbers become null; numpy scalars become Python."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


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
