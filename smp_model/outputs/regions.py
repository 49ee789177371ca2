"""DS9 region files of a fit, written with the ``regions`` package: a circle at each fitted
source and the outline of the background grid, in ICRS sky coordinates (the frame of the
table's ``ra``/``dec``, so the digits match; FK5 J2000 differs from it by ~20 mas).
"""
from __future__ import annotations

import os
from pathlib import Path

import astropy.units as u
import numpy as np

from ..files import atomic_output
from ..fit.results import SceneFit
from .record import fit_record

__all__ = ["write_regions"]


def write_regions(fit: SceneFit, path: str | os.PathLike, overwrite: bool = False,
                  radius_arcsec: float = 1.0) -> Path:
    """DS9 region file (icrs) of the fit: a circle of ``radius_arcsec`` at each fitted
    source (text = its component name) and the outline of the background grid (a
    polygon through its corner sources), written with the ``regions`` package."""
    from regions import CircleSkyRegion, PolygonSkyRegion, Regions

    record = fit_record(fit)
    shapes = []
    for row in record.rows:
        circle = CircleSkyRegion(_icrs(row["ra"], row["dec"]), radius=radius_arcsec * u.arcsec)
        circle.meta["text"] = row["component"]
        shapes.append(circle)
    n = fit.settings.grid_size
    ra, dec = (np.asarray(a).reshape(n, n) for a in (fit.scene.grid_ra, fit.scene.grid_dec))
    corners = [(0, 0), (0, n - 1), (n - 1, n - 1), (n - 1, 0)]
    outline = PolygonSkyRegion(_icrs([ra[c] for c in corners], [dec[c] for c in corners]))
    outline.meta["text"] = f"{n}x{n} grid"
    shapes.append(outline)
    text = Regions(shapes).serialize(format="ds9")
    with atomic_output(path, overwrite) as tmp:
        Path(tmp).write_text(text)
    return Path(path)


def _icrs(ra, dec):
    """ICRS degrees as coordinates of the region file."""
    from astropy.coordinates import SkyCoord
    return SkyCoord(ra, dec, unit="deg", frame="icrs")
