"""The catalogue of bad inputs (issue 6): every input a user can get wrong, with what the
library raises and what ``smp fit`` prints.

Each catalogue entry builds one broken input from the real DES sample (only the broken file
is copied into ``tmp_path``; the manifest there points at the rest of the sample) and is
checked twice:

* the library raises the documented `SMPError` subclass, whose message names the file or
  exposure and the problem;
* ``smp fit`` exits with code 2 and prints exactly one line on stderr (``smp: error: ...``)
  with the same facts, and no traceback.

Inputs that are bad but usable (NaN pixels, an all-masked non-detection exposure, a target
on blank sky) are checked for the warning and for a fit that still works.  The end of the
file checks that no writer ever destroys an existing file.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
from astropy.table import Table
from badinputs import (BlockImports, broken_stamp, compressed_copy, copy_file, damaged_card,
                       detection_entry, folder_args, over_long_path, symlink_loop,
                       garbage_file, is_root, manifest_doc, non_piff_fits, other_entry,
                       pixmappy_piff, sample_manifest, stamp_arrays, truncated_copy, write_doc,
                       zeropoints_without)

from smp_model.cli.command import main
from smp_model.errors import (FitError, ManifestError, MissingDependencyError, PSFError,
                              ResourceLimitError, SMPError, StampError, ZeropointError)
from smp_model.files import OutputExistsError
from smp_model.fit.photometry import DetectionPhotometry
from smp_model.inputs.folder import manifest_from_folder
from smp_model.inputs.manifest import DetectionManifest
from smp_model.inputs.stamps import read_stamp
from smp_model.psf.models import load_psf
from smp_model.scene.exposures import DroppedExposureWarning
from smp_model.settings import FitSettings

N_EXPOSURES = 2        # detection + one other: enough for every check, and fast


# -- the catalogue ---------------------------------------------------------------------

@dataclass
class BadInput:
    """One broken input: how to feed it to the library and to ``smp fit``, and what
    both must say about it."""

    library: Callable[[], Any]
    argv: list[str]
    error: type[SMPError]
    fragments: tuple[str, ...]     # each must appear in the message


def manifest_input(manifest: Path, error: type[SMPError], *fragments: str,
                   settings: FitSettings = FitSettings(), offset=None, binary=None,
                   cli: tuple[str, ...] = ()) -> BadInput:
    """A broken manifest (or a manifest pointing at a broken file), fitted as a single
    target at ``offset`` or a binary at ``binary`` = (dx1, dx2, dy1, dy2)."""
    def library():
        phot = DetectionPhotometry(manifest, settings)
        return phot.fit_binary(binary) if binary is not None else phot.fit_single(offset)
    return BadInput(library, [str(manifest), *cli], error, fragments)


CATALOGUE: dict[str, Callable[[Path, Path, pytest.MonkeyPatch], BadInput]] = {}


def entry(name: str):
    def register(build):
        CATALOGUE[name] = build
        return build
    return register


def small_doc(sample: Path) -> dict:
    return manifest_doc(sample, n_exposures=N_EXPOSURES)


def edited_manifest(tmp: Path, sample: Path, edit: Callable[[dict], None]) -> Path:
    doc = small_doc(sample)
    edit(doc)
    return write_doc(tmp, doc)


# Manifests ----------------------------------------------------------------------------

@entry("manifest-missing")
def _(tmp, sample, mp):
    path = tmp / "nowhere.toml"
    return manifest_input(path, ManifestError, str(path), "not found")


@entry("manifest-is-a-directory")
def _(tmp, sample, mp):
    path = tmp / "detection.toml"
    path.mkdir()
    return manifest_input(path, ManifestError, str(path), "is not a file")


@entry("manifest-not-toml-text")
def _(tmp, sample, mp):
    path = tmp / "detection.toml"
    path.write_text("name = 'eris'\n[[exposures]\nexpnum = \n")
    return manifest_input(path, ManifestError, str(path), "not valid TOML")


@entry("manifest-random-bytes")
def _(tmp, sample, mp):
    path = garbage_file(tmp / "detection.toml")
    return manifest_input(path, ManifestError, str(path))


@entry("manifest-missing-key-ra")
def _(tmp, sample, mp):
    path = edited_manifest(tmp, sample, lambda d: d.pop("ra"))
    return manifest_input(path, ManifestError, str(path), "missing required key 'ra'")


@entry("manifest-missing-key-detection")
def _(tmp, sample, mp):
    path = edited_manifest(tmp, sample, lambda d: d.pop("detection"))
    return manifest_input(path, ManifestError, str(path), "missing required key 'detection'")


@entry("manifest-missing-key-exposure-zeropoint")
def _(tmp, sample, mp):
    path = edited_manifest(tmp, sample, lambda d: d["exposures"][1].pop("zeropoint"))
    return manifest_input(path, ManifestError, str(path),
                          "missing required key 'exposures[1].zeropoint'")


@entry("manifest-wrong-type-ra")
def _(tmp, sample, mp):
    path = edited_manifest(tmp, sample, lambda d: d.update(ra="25.6"))
    return manifest_input(path, ManifestError, str(path), "'ra' must be a finite number")


@entry("manifest-wrong-type-expnum")
def _(tmp, sample, mp):
    path = edited_manifest(tmp, sample, lambda d: d["exposures"][0].update(expnum="234928"))
    return manifest_input(path, ManifestError, str(path),
                          "'exposures[0].expnum' must be an integer")


@entry("manifest-wrong-type-stamp-origin")
def _(tmp, sample, mp):
    path = edited_manifest(tmp, sample,
                           lambda d: d["exposures"][1].update(stamp_origin=[858.5, 2356]))
    return manifest_input(path, ManifestError, str(path),
                          "'exposures[1].stamp_origin' must be a list of two integers")


@entry("manifest-wrong-type-exposures")
def _(tmp, sample, mp):
    path = edited_manifest(tmp, sample, lambda d: d.update(exposures="all of them"))
    return manifest_input(path, ManifestError, str(path), "[[exposures]]")


@entry("manifest-unknown-format")
def _(tmp, sample, mp):
    path = edited_manifest(tmp, sample, lambda d: d.update(format="smp-detection/2"))
    return manifest_input(path, ManifestError, str(path), "unknown format 'smp-detection/2'")


@entry("manifest-duplicate-exposure")
def _(tmp, sample, mp):
    path = edited_manifest(tmp, sample,
                           lambda d: d["exposures"].append(dict(d["exposures"][1])))
    other = small_doc(sample)["exposures"][1]
    return manifest_input(path, ManifestError, str(path), "duplicate exposure",
                          str(other["expnum"]))


@entry("manifest-detection-not-listed")
def _(tmp, sample, mp):
    path = edited_manifest(tmp, sample, lambda d: d["detection"].update(expnum=111))
    return manifest_input(path, ManifestError, str(path), "detection exposure 111",
                          "not among the [[exposures]]")


# Stamps -------------------------------------------------------------------------------

def with_stamp(tmp: Path, sample: Path, make: Callable[[dict], Path], detection=True):
    """Manifest whose detection (or other) stamp is replaced by ``make(entry)``'s file."""
    doc = small_doc(sample)
    exposure = detection_entry(doc) if detection else other_entry(doc)
    stamp = make(exposure)
    exposure["stamp"] = str(stamp)
    return write_doc(tmp, doc), stamp, exposure


@entry("stamp-missing")
def _(tmp, sample, mp):
    path, stamp, _ = with_stamp(tmp, sample, lambda e: tmp / "eris_gone.fits")
    return manifest_input(path, StampError, str(stamp), "not found")


@entry("stamp-is-a-directory")
def _(tmp, sample, mp):
    def make(e):
        (tmp / "stamp.fits").mkdir()
        return tmp / "stamp.fits"
    path, stamp, _ = with_stamp(tmp, sample, make)
    return manifest_input(path, StampError, str(stamp), "is not a file")


@entry("stamp-not-fits")
def _(tmp, sample, mp):
    path, stamp, _ = with_stamp(tmp, sample, lambda e: garbage_file(tmp / "eris_x.fits"),
                                detection=False)
    return manifest_input(path, StampError, str(stamp), "not a FITS file")


@entry("stamp-text-file")
def _(tmp, sample, mp):
    def make(e):
        (tmp / "stamp.fits").write_text("<html>404 Not Found</html>\n")
        return tmp / "stamp.fits"
    path, stamp, _ = with_stamp(tmp, sample, make)
    return manifest_input(path, StampError, str(stamp), "not a FITS file")


@entry("stamp-truncated-half")
def _(tmp, sample, mp):
    path, stamp, _ = with_stamp(
        tmp, sample, lambda e: truncated_copy(e["stamp"], tmp / Path(e["stamp"]).name))
    return manifest_input(path, StampError, str(stamp), "truncated")


@entry("stamp-truncated-one-block-short")
def _(tmp, sample, mp):
    """Cut on a 2880-byte block boundary inside the last HDU's data: the size check cannot
    see it, the HDU extents can."""
    def make(e):
        size = Path(e["stamp"]).stat().st_size
        return truncated_copy(e["stamp"], tmp / Path(e["stamp"]).name,
                              (size - 2880) / size)
    path, stamp, _ = with_stamp(tmp, sample, make, detection=False)
    return manifest_input(path, StampError, str(stamp), "truncated")


for _hdu in ("SCI", "MSK", "WGT"):
    @entry(f"stamp-without-{_hdu}")
    def _(tmp, sample, mp, hdu=_hdu):
        path, stamp, _ = with_stamp(tmp, sample,
                                    lambda e: broken_stamp(tmp, {}, e, **{hdu: None}))
        return manifest_input(path, StampError, str(stamp), f"missing HDU(s) {hdu}")


@entry("stamp-hdu-shapes-differ")
def _(tmp, sample, mp):
    def make(e):
        return broken_stamp(tmp, {}, e, MSK=stamp_arrays(Path(e["stamp"]))["MSK"][:-1])
    path, stamp, _ = with_stamp(tmp, sample, make)
    return manifest_input(path, StampError, str(stamp), "HDU shapes differ")


@entry("stamp-msk-not-integer")
def _(tmp, sample, mp):
    def make(e):
        msk = stamp_arrays(Path(e["stamp"]))["MSK"].astype(np.float32)
        return broken_stamp(tmp, {}, e, MSK=msk)
    path, stamp, _ = with_stamp(tmp, sample, make)
    return manifest_input(path, StampError, str(stamp), "MSK must be an integer")


@entry("stamps-of-different-shapes")
def _(tmp, sample, mp):
    def make(e):
        arrays = stamp_arrays(Path(e["stamp"]))
        return broken_stamp(tmp, {}, e, **{k: a[:29, :29] for k, a in arrays.items()})
    path, stamp, exposure = with_stamp(tmp, sample, make, detection=False)
    return manifest_input(path, ManifestError, str(path), "must share a shape",
                          f"{exposure['expnum']}: (29, 29)")


@entry("stamp-negative-wgt")
def _(tmp, sample, mp):
    def make(e):
        wgt = stamp_arrays(Path(e["stamp"]))["WGT"]
        wgt[3, 4] = -1.0
        return broken_stamp(tmp, {}, e, WGT=wgt)
    path, stamp, _ = with_stamp(tmp, sample, make, detection=False)
    return manifest_input(path, StampError, str(stamp), "WGT has 1 negative or non-finite")


@entry("stamp-nan-wgt")
def _(tmp, sample, mp):
    def make(e):
        wgt = stamp_arrays(Path(e["stamp"]))["WGT"]
        wgt[3, 4:7] = np.nan
        return broken_stamp(tmp, {}, e, WGT=wgt)
    path, stamp, _ = with_stamp(tmp, sample, make)
    return manifest_input(path, StampError, str(stamp), "WGT has 3 negative or non-finite")


@entry("detection-stamp-all-masked")
def _(tmp, sample, mp):
    def make(e):
        return broken_stamp(tmp, {}, e, MSK=np.ones((30, 30), np.int16))
    path, stamp, exposure = with_stamp(tmp, sample, make)
    return manifest_input(path, StampError, str(stamp),
                          f"detection exposure {exposure['expnum']}", "no usable pixel")


@entry("detection-stamp-zero-weight")
def _(tmp, sample, mp):
    def make(e):
        return broken_stamp(tmp, {}, e, WGT=np.zeros((30, 30), np.float32))
    path, stamp, exposure = with_stamp(tmp, sample, make)
    return manifest_input(path, StampError, str(stamp),
                          f"detection exposure {exposure['expnum']}", "no usable pixel")


# PSFs ---------------------------------------------------------------------------------

def with_psf(tmp: Path, sample: Path, make: Callable[[dict], Path], detection=False):
    doc = small_doc(sample)
    exposure = detection_entry(doc) if detection else other_entry(doc)
    psf = make(exposure)
    exposure["psf"] = str(psf)
    return write_doc(tmp, doc), psf


@entry("psf-missing")
def _(tmp, sample, mp):
    path, psf = with_psf(tmp, sample, lambda e: tmp / "1_1_piff.fits")
    return manifest_input(path, PSFError, str(psf), "PSF file not found")


@entry("psf-is-a-directory")
def _(tmp, sample, mp):
    def make(e):
        (tmp / "piff.fits").mkdir()
        return tmp / "piff.fits"
    path, psf = with_psf(tmp, sample, make)
    return manifest_input(path, PSFError, str(psf), "is not a file")


@entry("psf-garbage-bytes")
def _(tmp, sample, mp):
    path, psf = with_psf(tmp, sample, lambda e: garbage_file(tmp / "x_piff.fits", 20000),
                         detection=True)
    return manifest_input(path, PSFError, str(psf), "not a FITS file")


@entry("psf-truncated")
def _(tmp, sample, mp):
    path, psf = with_psf(tmp, sample,
                         lambda e: truncated_copy(e["psf"], tmp / Path(e["psf"]).name))
    return manifest_input(path, PSFError, str(psf), "truncated")


@entry("psf-fits-but-not-piff")
def _(tmp, sample, mp):
    path, psf = with_psf(tmp, sample, lambda e: non_piff_fits(tmp / "not_piff.fits"))
    return manifest_input(path, PSFError, str(psf), "not a PSF file")


@entry("psf-stamp-file-as-psf")
def _(tmp, sample, mp):
    path, psf = with_psf(tmp, sample, lambda e: Path(e["stamp"]))
    return manifest_input(path, PSFError, str(psf), "not a PSF file")


@entry("psf-needs-pixmappy")
def _(tmp, sample, mp):
    path, psf = with_psf(tmp, sample, lambda e: pixmappy_piff(tmp, Path(e["psf"])))
    mp.setattr(sys, "meta_path", [BlockImports("pixmappy")] + sys.meta_path)
    # a real pixmappy imported earlier in the session would be found in sys.modules
    for name in [m for m in sys.modules if m.split(".")[0] == "pixmappy"]:
        mp.delitem(sys.modules, name)
    return manifest_input(path, MissingDependencyError, str(psf), "pixmappy",
                          "not installed")


# Zeropoints (folder form) -------------------------------------------------------------

def folder_input(tmp: Path, sample: Path, missing_expnum: int) -> BadInput:
    zeropoints = zeropoints_without(sample, tmp / "zeropoints.ecsv", missing_expnum)
    argv = folder_args(sample, zeropoints)
    m = sample_manifest(sample)

    def library():
        return manifest_from_folder(
            sample / m.name / "stamps", sample / "psfs", zeropoints, name=m.name, ra=m.ra,
            dec=m.dec, band=m.band, expnum=m.detection_expnum, ccdnum=m.detection_ccdnum)
    return BadInput(library, argv, ZeropointError,
                    (str(zeropoints), f"exposure {missing_expnum}", "no zeropoint"))


@entry("zeropoint-missing-for-an-exposure")
def _(tmp, sample, mp):
    return folder_input(tmp, sample, other_entry(small_doc(sample))["expnum"])


@entry("zeropoint-missing-for-the-detection")
def _(tmp, sample, mp):
    return folder_input(tmp, sample, sample_manifest(sample).detection_expnum)



@entry("folder-form-position-off-the-ccd")
def _(tmp, sample, mp):
    # 0.8 deg east of the detection: every stamp would fit "around" it without the check
    # (the folder form places the stamps by the position), and the flux came out halved
    m = sample_manifest(sample)
    argv = folder_args(sample, sample / "zeropoints.ecsv")
    ra = m.ra + 0.8
    argv[argv.index("--ra") + 1] = repr(ra)

    def library():
        return manifest_from_folder(
            sample / m.name / "stamps", sample / "psfs", sample / "zeropoints.ecsv",
            name=m.name, ra=ra, dec=m.dec, band=m.band, expnum=m.detection_expnum,
            ccdnum=m.detection_ccdnum)
    return BadInput(library, argv, ManifestError,
                    ("_piff.fits", "off the 2048 x 4096 CCD", "check --ra/--dec"))

# The fit ------------------------------------------------------------------------------

@entry("grid-too-large-for-memory")
def _(tmp, sample, mp):
    path = write_doc(tmp, manifest_doc(sample))
    return manifest_input(path, ResourceLimitError, "2000x2000", "GiB",
                          settings=FitSettings(grid_size=2000), cli=("--grid", "2000"))


@entry("target-outside-every-pixel")
def _(tmp, sample, mp):
    path = write_doc(tmp, small_doc(sample))
    det = sample_manifest(sample).detection_exposure
    return manifest_input(path, FitError, det.label, "falls on no usable pixel",
                          offset=(100.0, 100.0), cli=("--offset=100,100",))


@entry("binary-components-on-top-of-each-other")
def _(tmp, sample, mp):
    path = write_doc(tmp, small_doc(sample))
    det = sample_manifest(sample).detection_exposure
    return manifest_input(path, FitError, det.label, "degenerate",
                          binary=(0.5, 0.5, -0.25, -0.25), cli=("--binary=0.5,0.5,-0.25,-0.25",))


@entry("grid-sources-off-every-stamp")
def _(tmp, sample, mp):
    path = write_doc(tmp, small_doc(sample))
    return manifest_input(path, FitError, "touch no usable pixel", "singular",
                          settings=FitSettings(grid_step_arcsec=20.0),
                          cli=("--step", "20"))


@entry("grid-ill-conditioned")
def _(tmp, sample, mp):
    path = write_doc(tmp, small_doc(sample))
    return manifest_input(path, FitError, "ill-conditioned", "condition number",
                          settings=FitSettings(grid_step_arcsec=0.01),
                          cli=("--step", "0.01"))


# Issue 13: values that are well-formed but not plausible ------------------------------------

@entry("manifest-zeropoint-absurd")
def _(tmp, sample, mp):
    """A zeropoint of 1e300 used to print numpy overflow warnings and then blame the grid."""
    path = edited_manifest(tmp, sample, lambda d: d["exposures"][1].update(zeropoint=1e300))
    return manifest_input(path, ManifestError, str(path), "'exposures[1].zeropoint'",
                          "[10, 50]", "1e+300")


@entry("manifest-zeropoint-nan")
def _(tmp, sample, mp):
    path = edited_manifest(tmp, sample, lambda d: d["exposures"][0].update(zeropoint=math.nan))
    return manifest_input(path, ManifestError, str(path), "'exposures[0].zeropoint'",
                          "finite number")


@entry("manifest-color-gi-infinite")
def _(tmp, sample, mp):
    path = edited_manifest(tmp, sample, lambda d: d.update(color_gi=math.inf))
    return manifest_input(path, ManifestError, str(path), "'color_gi' must be a finite number")


@entry("manifest-gain-nan")
def _(tmp, sample, mp):
    path = edited_manifest(tmp, sample, lambda d: d["exposures"][0].update(gain=math.nan))
    return manifest_input(path, ManifestError, str(path),
                          "'exposures[0].gain' must be a finite number")


@entry("manifest-gain-negative")
def _(tmp, sample, mp):
    path = edited_manifest(tmp, sample, lambda d: d["exposures"][0].update(gain=-4.0))
    return manifest_input(path, ManifestError, str(path), "'exposures[0].gain' must be positive")


@entry("manifest-target-xy-infinite")
def _(tmp, sample, mp):
    path = edited_manifest(tmp, sample,
                           lambda d: d["exposures"][1].update(target_xy=[math.inf, 2.0]))
    return manifest_input(path, ManifestError, str(path), "'exposures[1].target_xy'")


@entry("manifest-dec-out-of-range")
def _(tmp, sample, mp):
    path = edited_manifest(tmp, sample, lambda d: d.update(dec=-93.4))
    return manifest_input(path, ManifestError, str(path), "'dec' must be in [-90, 90]")


@entry("manifest-ra-out-of-range")
def _(tmp, sample, mp):
    path = edited_manifest(tmp, sample, lambda d: d.update(ra=385.6))
    return manifest_input(path, ManifestError, str(path), "'ra' must be in [0, 360]")


@entry("stamp-origin-far-off-the-ccd")
def _(tmp, sample, mp):
    """Used to blame the PSF file's WCS (its inverse started from the stamp's far-off
    centre); the message names the stamp_origin and where the target really is."""
    doc = small_doc(sample)
    entry_ = detection_entry(doc)
    entry_["stamp_origin"] = [100000, -50000]
    path = write_doc(tmp, doc)
    return manifest_input(path, ManifestError, str(path), f"exposure {entry_['expnum']}",
                          "stamp_origin [100000, -50000]", "must contain")


@entry("stamp-origin-off-by-a-stamp")
def _(tmp, sample, mp):
    doc = small_doc(sample)
    entry_ = other_entry(doc)
    x0, y0 = entry_["stamp_origin"]
    entry_["stamp_origin"] = [x0 + 200, y0]
    path = write_doc(tmp, doc)
    return manifest_input(path, ManifestError, str(path), f"exposure {entry_['expnum']}",
                          f"stamp_origin [{x0 + 200}, {y0}]", "must contain")


@entry("stamp-sci-1e38-everywhere")
def _(tmp, sample, mp):
    """Used to give flux 0.0 and chi2 4.9e47 with exit 0."""
    path, stamp, _ = with_stamp(
        tmp, sample, lambda e: broken_stamp(tmp, {}, e, SCI=np.full((30, 30), 1e38, np.float32)))
    return manifest_input(path, StampError, str(stamp), "values not plausible")


@entry("stamp-wgt-1e300")
def _(tmp, sample, mp):
    """Used to print numpy overflow warnings and call the target 'degenerate'."""
    path, stamp, _ = with_stamp(
        tmp, sample, lambda e: broken_stamp(tmp, {}, e, WGT=np.full((30, 30), 1e300)),
        detection=False)
    return manifest_input(path, StampError, str(stamp), "values not plausible")


@entry("stamp-wgt-1e8-times-too-large")
def _(tmp, sample, mp):
    """Pixel values that pass the per-pixel check but give chi2/dof ~ 1e8: refused by
    the fit's plausibility check, naming the detection stamp."""
    def make(e):
        wgt = stamp_arrays(Path(e["stamp"]))["WGT"].astype(np.float64) * 1e8
        return broken_stamp(tmp, {}, e, WGT=wgt)
    path, stamp, _ = with_stamp(tmp, sample, make)
    return manifest_input(path, FitError, str(stamp), "implausible fit", "chi2/dof")


def zeropoint_table_input(tmp: Path, sample: Path, edit: Callable[[Table], Table],
                          suffix: str, *fragments: str) -> BadInput:
    table = Table.read(sample / "zeropoints.ecsv", format="ascii.ecsv")
    zeropoints = tmp / f"zeropoints{suffix}"
    edit(table).write(zeropoints)
    m = sample_manifest(sample)

    def library():
        return manifest_from_folder(
            sample / m.name / "stamps", sample / "psfs", zeropoints, name=m.name, ra=m.ra,
            dec=m.dec, band=m.band, expnum=m.detection_expnum, ccdnum=m.detection_ccdnum)
    return BadInput(library, folder_args(sample, zeropoints), ZeropointError,
                    (str(zeropoints), *fragments))


def _blank_zeropoint(table: Table) -> Table:
    table = Table(table, masked=True)
    table["zeropoint"].mask[0] = True
    return table


@entry("zeropoint-table-blank-cell-csv")
def _(tmp, sample, mp):
    """A blank zeropoint cell used to end in a MaskError traceback."""
    expnum = Table.read(sample / "zeropoints.ecsv")["expnum"][0]
    return zeropoint_table_input(tmp, sample, _blank_zeropoint, ".csv", "row 1",
                                 f"exposure {expnum}", "blank cell")


@entry("zeropoint-table-blank-cell-ecsv")
def _(tmp, sample, mp):
    return zeropoint_table_input(tmp, sample, _blank_zeropoint, ".ecsv", "row 1", "blank cell")


@entry("zeropoint-table-nan")
def _(tmp, sample, mp):
    def edit(table):
        table["zeropoint"][2] = np.nan
        return table
    return zeropoint_table_input(tmp, sample, edit, ".ecsv", "row 3", "must be finite")


@entry("zeropoint-table-absurd-value")
def _(tmp, sample, mp):
    def edit(table):
        table["zeropoint"][1] = 1e300
        return table
    return zeropoint_table_input(tmp, sample, edit, ".ecsv", "row 2", "[10, 50]")


@entry("zeropoint-table-text-expnum")
def _(tmp, sample, mp):
    def edit(table):
        table["expnum"] = table["expnum"].astype(str)
        table["expnum"][0] = "first"
        return table
    return zeropoint_table_input(tmp, sample, edit, ".csv", "row 1", "'expnum'", "'first'")


@entry("zeropoint-table-fractional-ccdnum")
def _(tmp, sample, mp):
    """Killed a surviving mutant of the integer check (issue 13 mutation check)."""
    def edit(table):
        table["ccdnum"] = table["ccdnum"].astype(float)
        table["ccdnum"][3] += 0.5
        return table
    return zeropoint_table_input(tmp, sample, edit, ".ecsv", "row 4", "'ccdnum'",
                                 "must be an integer")


@entry("zeropoint-table-conflicting-duplicate")
def _(tmp, sample, mp):
    """Two rows for one exposure with different zeropoints: the last row used to win."""
    det = sample_manifest(sample).detection_exposure
    def edit(table):
        row = list(table[(table["expnum"] == det.expnum) & (table["ccdnum"] == det.ccdnum)][0])
        table.add_row(row)
        table["zeropoint"][-1] += 0.01
        return table
    n = len(Table.read(sample / "zeropoints.ecsv"))
    return zeropoint_table_input(tmp, sample, edit, ".ecsv", f"row {n + 1}",
                                 f"exposure {det.expnum}", "conflicts with row")


# -- issue 27: damaged compressed files, damaged headers, implausible pixel types ----------

def compressed_stamp(tmp: Path, sample: Path, suffix: str, damage: str | None):
    return with_stamp(tmp, sample, lambda e: compressed_copy(
        Path(e["stamp"]), tmp / (Path(e["stamp"]).name + suffix), damage))


for _suffix, _name in ((".gz", "gzip"), (".bz2", "bzip2"), (".xz", "xz")):
    for _damage in ("deflate", "middle", "crc", "truncate"):
        if _suffix == ".bz2" and _damage == "crc":
            continue   # bzip2 checks each block: a flipped end is a bad stream, as "deflate"

        @entry(f"stamp-{_name}-damaged-{_damage}")
        def _(tmp, sample, mp, suffix=_suffix, name=_name, damage=_damage):
            path, stamp, _ = compressed_stamp(tmp, sample, suffix, damage)
            return manifest_input(path, StampError, str(stamp), f"damaged {name} stream")


@entry("stamp-gzip-damaged-zlib-error")
def _(tmp, sample, mp):
    """Issue 27's 84-line traceback: zlib's own error escaped the stamp reader."""
    path, stamp, _ = compressed_stamp(tmp, sample, ".gz", "deflate")
    return manifest_input(path, StampError, str(stamp), "damaged gzip stream", "zlib.error")


@entry("psf-gzip-damaged")
def _(tmp, sample, mp):
    path, psf = with_psf(tmp, sample, lambda e: compressed_copy(
        Path(e["psf"]), tmp / (Path(e["psf"]).name + ".gz"), "crc"))
    return manifest_input(path, PSFError, str(psf), "damaged gzip stream", "CRC check failed")


@entry("stamp-unparsable-extname-card")
def _(tmp, sample, mp):
    """astropy raises VerifyError reading this card: it escaped the reader."""
    path, stamp, _ = with_stamp(tmp, sample, lambda e: damaged_card(
        Path(e["stamp"]), tmp / Path(e["stamp"]).name, b"EXTNAME = 'SCI"))
    return manifest_input(path, StampError, str(stamp), "Unparsable card (EXTNAME)")


@entry("stamp-unparsable-xtension-card")
def _(tmp, sample, mp):
    """astropy warns (two lines on stderr) and reads the HDU as 'corrupted'."""
    path, stamp, _ = with_stamp(tmp, sample, lambda e: damaged_card(
        Path(e["stamp"]), tmp / Path(e["stamp"]).name, b"XTENSION= 'IMAGE"))
    return manifest_input(path, StampError, str(stamp), "damaged FITS header in HDU 1",
                          "Unparsable card (XTENSION)")


def sci_stored_as(tmp: Path, sample: Path, dtype, shift: float = 0.0, detection=True):
    """The manifest with one stamp whose SCI (plus ``shift``) is stored as the integer
    ``dtype``, clipped to its range."""
    def make(e):
        sci = stamp_arrays(Path(e["stamp"]))["SCI"] + shift
        limits = np.iinfo(dtype)
        return broken_stamp(tmp, {}, e, SCI=np.clip(sci, limits.min, limits.max).astype(dtype))
    path, stamp, _ = with_stamp(tmp, sample, make, detection=detection)
    return path, stamp


@entry("stamp-sci-unsigned-bytes")
def _(tmp, sample, mp):
    """Issue 27: fitted without a word, with a flux 12x too small."""
    path, stamp = sci_stored_as(tmp, sample, np.uint8)
    return manifest_input(path, StampError, str(stamp), "SCI is stored as uint8",
                          "cannot hold a sky-subtracted image")


@entry("stamp-sci-unsigned-16-bit")
def _(tmp, sample, mp):
    """Unsigned 16-bit as FITS stores it (int16 with BZERO = 32768); astropy reads uint16."""
    path, stamp = sci_stored_as(tmp, sample, np.uint16, shift=1000.0, detection=False)
    return manifest_input(path, StampError, str(stamp), "SCI is stored as uint16")


# CCD numbers (DECam's science CCDs are 1-62 unless the manifest names another camera)

@entry("manifest-ccdnum-negative")
def _(tmp, sample, mp):
    def edit(doc):
        other_entry(doc)["ccdnum"] = -3
    path = edited_manifest(tmp, sample, edit)
    return manifest_input(path, ManifestError, str(path), "exposures[1].ccdnum",
                          "DECam CCD number (1-62), got -3")


@entry("manifest-ccdnum-not-on-decam")
def _(tmp, sample, mp):
    def edit(doc):
        det = detection_entry(doc)
        det["ccdnum"] = doc["detection"]["ccdnum"] = 63
    path = edited_manifest(tmp, sample, edit)
    return manifest_input(path, ManifestError, str(path), "detection.ccdnum", "got 63")


@entry("manifest-ccdnum-negative-other-camera")
def _(tmp, sample, mp):
    def edit(doc):
        doc["camera"] = "HSC"
        other_entry(doc)["ccdnum"] = -1
    path = edited_manifest(tmp, sample, edit)
    return manifest_input(path, ManifestError, str(path), "exposures[1].ccdnum",
                          "CCD number >= 0, got -1")


# Paths the file system cannot open as they are

@entry("manifest-symlink-loop")
def _(tmp, sample, mp):
    path = symlink_loop(tmp, "detection.toml")
    return manifest_input(path, ManifestError, str(path), "symbolic link loop")


@entry("stamp-symlink-loop")
def _(tmp, sample, mp):
    """Issue 27: read "file not found"."""
    path, stamp, _ = with_stamp(tmp, sample, lambda e: symlink_loop(tmp, "loop.fits"))
    return manifest_input(path, StampError, str(stamp), "symbolic link loop")


@entry("psf-dangling-symlink")
def _(tmp, sample, mp):
    def make(e):
        link = tmp / "gone_piff.fits"
        link.symlink_to(tmp / "moved_away.fits")
        return link
    path, psf = with_psf(tmp, sample, make)
    return manifest_input(path, PSFError, str(psf), "symbolic link to", "does not exist")


@entry("manifest-stamp-name-too-long")
def _(tmp, sample, mp):
    """Issue 27: a raw "[Errno 36] File name too long" naming no manifest entry."""
    def edit(doc):
        other_entry(doc)["stamp"] = str(over_long_path(tmp))
    path = edited_manifest(tmp, sample, edit)
    return manifest_input(path, ManifestError, str(path), "exposures[1].stamp",
                          "path too long", "a name of 301 bytes")


@entry("manifest-psf-path-too-long")
def _(tmp, sample, mp):
    def edit(doc):
        detection_entry(doc)["psf"] = "/".join(["d" * 200] * 25) + "/piff.fits"
    path = edited_manifest(tmp, sample, edit)
    return manifest_input(path, ManifestError, str(path), "exposures[0].psf",
                          "path too long")


# -- the catalogue checks --------------------------------------------------------------

@pytest.fixture
def bad_input(request, tmp_path, des_sample, monkeypatch) -> BadInput:
    return CATALOGUE[request.param](tmp_path, des_sample, monkeypatch)


def assert_names_problem(message: str, bad: BadInput) -> None:
    assert "\n" not in message
    for fragment in bad.fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


@pytest.mark.parametrize("bad_input", list(CATALOGUE), indirect=True)
def test_library_raises_typed_error(bad_input):
    with pytest.raises(bad_input.error) as info:
        bad_input.library()
    assert type(info.value) is bad_input.error     # not a vaguer parent class
    assert_names_problem(info.value.one_line(), bad_input)


def assert_cli_one_line_error(code: int, out: str, err: str, bad: BadInput) -> str:
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{err}"
    assert lines[0].startswith("smp: error: ")
    assert_names_problem(lines[0], bad)
    assert out == ""
    return lines[0]


@pytest.mark.parametrize("bad_input", list(CATALOGUE), indirect=True)
def test_cli_exits_2_with_one_line(bad_input, capsys):
    code = main(["fit", *bad_input.argv, "--quiet"])
    out, err = capsys.readouterr()
    assert_cli_one_line_error(code, out, err, bad_input)


def test_grid_too_large_is_refused_fast(des_sample):
    """Refused before allocating: well under the time a real 2000x2000 grid would take."""
    manifest = sample_manifest(des_sample)
    t0 = time.perf_counter()
    with pytest.raises(ResourceLimitError, match="GiB"):
        DetectionPhotometry(manifest, FitSettings(grid_size=2000))
    assert time.perf_counter() - t0 < 5.0


# -- a couple through a real process -----------------------------------------------------

# ``smp`` in a child where pixmappy cannot be imported even if installed (./dev setup
# installs the vendored one): the fake pixmappy Piff file must meet the missing import.
_SMP_WITHOUT_PIXMAPPY = ("import sys; sys.modules['pixmappy'] = None; "
                         "from smp_model.cli.command import main; sys.exit(main(sys.argv[1:]))")


def run_smp(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([sys.executable, "-c", _SMP_WITHOUT_PIXMAPPY, "fit", *args,
                           "--quiet"],
                          capture_output=True, text=True, timeout=120, env=env,
                          cwd=Path(__file__).resolve().parent.parent)


@pytest.mark.parametrize("name", ["stamp-truncated-half", "psf-needs-pixmappy"])
def test_cli_subprocess(name, tmp_path, des_sample, monkeypatch):
    """The real ``python -m smp_model.cli``: exit status 2, one stderr line (pixmappy is
    not installed in the child, so the fake Piff file meets the real missing import)."""
    bad = CATALOGUE[name](tmp_path, des_sample, monkeypatch)
    result = run_smp(*bad.argv)
    assert_cli_one_line_error(result.returncode, result.stdout, result.stderr, bad)


# -- reader-level checks that the catalogue's end-to-end runs do not isolate ----------------

def test_pixmappy_piff_loads_when_pixmappy_is_importable(tmp_path, des_sample, monkeypatch):
    """Control for the pixmappy entry: the same file loads once the module is importable,
    so the error above is about the missing module and nothing else."""
    real = Path(sample_manifest(des_sample).detection_exposure.psf)
    path = pixmappy_piff(tmp_path, real)
    monkeypatch.setattr(sys, "meta_path", [BlockImports("pixmappy")] + sys.meta_path)
    for name in [m for m in sys.modules if m.split(".")[0] == "pixmappy"]:
        monkeypatch.delitem(sys.modules, name)   # a real pixmappy imported earlier
    with pytest.raises(MissingDependencyError, match="pixmappy") as info:
        load_psf(path)
    assert str(path) in info.value.one_line()
    monkeypatch.setattr(sys, "meta_path", sys.meta_path[1:])
    monkeypatch.syspath_prepend(str(tmp_path / "fake_modules"))
    monkeypatch.delitem(sys.modules, "pixmappy", raising=False)
    try:
        psf = load_psf(path)
        assert type(psf.wcs).__module__ == "pixmappy"
    finally:   # the fake must not stay importable for later tests
        sys.modules.pop("pixmappy", None)


@pytest.mark.skipif(is_root(), reason="running as root: chmod 000 does not stop root "
                                      "from reading (the is-a-directory entries cover it)")
@pytest.mark.parametrize("what", ["manifest", "stamp", "psf"])
def test_unreadable_file(what, tmp_path, des_sample, capsys):
    doc = small_doc(des_sample)
    exposure = detection_entry(doc)
    if what == "manifest":
        target = path = write_doc(tmp_path, doc)
        error = ManifestError
    else:
        target = copy_file(Path(exposure[what]), tmp_path)
        exposure[what] = str(target)
        path = write_doc(tmp_path, doc)
        error = StampError if what == "stamp" else PSFError
    target.chmod(0)
    bad = manifest_input(path, error, str(target))
    with pytest.raises(error) as info:
        bad.library()
    assert_names_problem(info.value.one_line(), bad)
    assert_cli_one_line_error(main(["fit", str(path), "--quiet"]), *capsys.readouterr(), bad)


def test_masked_bad_weights_are_fine(tmp_path, des_sample):
    """Negative or NaN WGT under a set MSK bit is how masks are meant to work: no error,
    and those pixels get no weight."""
    doc = small_doc(des_sample)
    exposure = detection_entry(doc)
    arrays = stamp_arrays(Path(exposure["stamp"]))
    arrays["WGT"][0, :3] = [-1.0, np.nan, np.inf]
    arrays["MSK"][0, :3] = 4
    path = broken_stamp(tmp_path, doc, exposure, WGT=arrays["WGT"], MSK=arrays["MSK"])
    stamp = read_stamp(path)
    assert not stamp.usable[0, :3].any()
    assert np.all(np.isfinite(stamp.wgt))


# -- bad but usable inputs: a warning, and the fit goes on ----------------------------------

@pytest.fixture
def nan_sci_manifest(tmp_path, des_sample) -> tuple[Path, Path]:
    doc = small_doc(des_sample)
    exposure = detection_entry(doc)
    sci = stamp_arrays(Path(exposure["stamp"]))["SCI"]
    sci[2, 2], sci[2, 3], sci[27, 27] = np.nan, np.inf, -np.inf
    stamp = broken_stamp(tmp_path, doc, exposure, SCI=sci)
    return write_doc(tmp_path, doc), stamp


def test_nan_and_inf_sci_are_masked_with_a_warning(nan_sci_manifest):
    manifest, stamp = nan_sci_manifest
    with pytest.warns(UserWarning, match="3 unmasked non-finite SCI pixel") as record:
        phot = DetectionPhotometry(manifest)
    assert any(str(stamp) in str(w.message) for w in record)
    det = phot.scene.detection
    assert det.weight[2, 2] == det.weight[2, 3] == det.weight[27, 27] == 0
    assert np.all(np.isfinite(det.image))
    fit = phot.fit_single()
    assert math.isfinite(fit.flux) and fit.flux > 0 and math.isfinite(fit.chi2)


def test_nan_sci_cli_warns_and_fits(nan_sci_manifest, capsys):
    manifest, stamp = nan_sci_manifest
    code = main(["fit", str(manifest), "--quiet", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("smp: warning: ")
    assert str(stamp) in lines[0] and "non-finite SCI" in lines[0]
    assert json.loads(out)["flux"] > 0


@pytest.fixture
def masked_other_manifest(tmp_path, des_sample) -> tuple[Path, int]:
    doc = manifest_doc(des_sample, n_exposures=3)
    exposure = other_entry(doc)
    broken_stamp(tmp_path, doc, exposure, MSK=np.full((30, 30), 1, np.int16))
    return write_doc(tmp_path, doc), exposure["expnum"]


def test_all_masked_exposure_is_dropped_with_a_warning(masked_other_manifest):
    manifest, expnum = masked_other_manifest
    with pytest.warns(DroppedExposureWarning, match=f"exposure {expnum} .*dropped"):
        phot = DetectionPhotometry(manifest)
    assert len(phot.dropped) == 1 and f"exposure {expnum}" in phot.dropped[0]
    assert expnum not in [ex.entry.expnum for ex in phot.exposures]
    assert len(phot.exposures) == 2
    fit = phot.fit_single()
    assert math.isfinite(fit.flux) and fit.flux > 0


def test_all_masked_exposure_cli_warns_and_fits(masked_other_manifest, capsys):
    manifest, expnum = masked_other_manifest
    code = main(["fit", str(manifest), "--quiet", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("smp: warning: ")
    assert f"exposure {expnum}" in lines[0] and "dropped" in lines[0]
    assert json.loads(out)["dropped_exposures"] == [expnum]


# Offset (px) from eris in its detection exposure that lands on blank sky, where the fitted
# flux is clearly negative (about -5 sigma with the detection and one other exposure, -6
# with the whole sample; asserted below).
BLANK_SKY_OFFSET = (-10.0, 8.0)


def test_negative_flux_gives_a_limit_magnitude(des_sample, tmp_path, capsys):
    from smp_model.cli.fit import text_summary
    manifest = write_doc(tmp_path, small_doc(des_sample))
    fit = DetectionPhotometry(manifest).fit_single(BLANK_SKY_OFFSET)
    assert fit.flux < -2 * fit.flux_err
    assert math.isnan(fit.mag) and math.isnan(fit.mag_err)
    limit = fit.primary.mag_limit_3sigma
    assert math.isfinite(limit)
    assert limit == pytest.approx(30 - 2.5 * math.log10(3 * fit.flux_err))
    assert f"mag > {limit:.3f}" in text_summary(fit)

    table_path = tmp_path / "flux.ecsv"
    code = main(["fit", str(manifest), "--quiet", "--json", "--offset=-10,8",
                 "--table", str(table_path)])
    out, err = capsys.readouterr()
    assert code == 0, err
    summary = json.loads(out)
    assert summary["mag"] is None and summary["mag_err"] is None
    assert summary["flux"] == pytest.approx(fit.flux, rel=1e-6)
    assert summary["mag_limit_3sigma"] == pytest.approx(limit, rel=1e-9)
    table = Table.read(table_path)
    assert table["flags"][0] & 1
    assert not np.isfinite(table["mag"][0])


# -- no data loss: writers never destroy an existing file -------------------------------------

@pytest.fixture(scope="module")
def small_fit(des_sample):
    return DetectionPhotometry(small_manifest(des_sample)).fit_single()


def small_manifest(sample: Path) -> DetectionManifest:
    doc = manifest_doc(sample, n_exposures=N_EXPOSURES)
    return DetectionManifest.from_dict(doc, base=sample)


def _write_table(fit, path, overwrite):
    from smp_model.outputs.tables import write_table
    return write_table(fit, path, overwrite=overwrite)


def _write_fits(fit, path, overwrite):
    from smp_model.outputs.cubes import write_fits
    return write_fits(fit, path, overwrite=overwrite)


def _save_figure(fit, path, overwrite):
    from smp_model.outputs.figures import save_figure
    return save_figure(fit, path, overwrite=overwrite)


def _write_manifest(fit, path, overwrite):
    return fit.manifest.write(path, overwrite=overwrite)


def _fail_astropy_table_write(mp):
    from astropy.table import Table as _Table

    def write(self, path, *args, **kwargs):
        Path(path).write_bytes(b"# half a table\n")
        raise RuntimeError("disk full (simulated)")
    mp.setattr(_Table, "write", write)


def _fail_fits_writeto(mp):
    from astropy.io import fits

    def writeto(self, path, *args, **kwargs):
        Path(path).write_bytes(b"SIMPLE  =                    T")
        raise OSError(28, "No space left on device (simulated)")
    mp.setattr(fits.HDUList, "writeto", writeto)


def _fail_savefig(mp):
    from matplotlib.figure import Figure

    def savefig(self, path, *args, **kwargs):
        Path(path).write_bytes(b"\x89PNG half")
        raise RuntimeError("renderer crashed (simulated)")
    mp.setattr(Figure, "savefig", savefig)


def _fail_write_bytes(mp):
    original = Path.write_bytes

    def write_bytes(self, data):
        original(self, data[:len(data) // 2])
        raise OSError(28, "No space left on device (simulated)")
    mp.setattr(Path, "write_bytes", write_bytes)


WRITERS = {
    "table-ecsv": (_write_table, "flux.ecsv", _fail_astropy_table_write),
    "table-fits": (_write_table, "flux.fits", _fail_fits_writeto),
    "table-csv": (_write_table, "flux.csv", _fail_astropy_table_write),
    "fits-cubes": (_write_fits, "cubes.fits", _fail_fits_writeto),
    "figure-png": (_save_figure, "panels.png", _fail_savefig),
    "figure-pdf": (_save_figure, "panels.pdf", _fail_savefig),
    "manifest": (_write_manifest, "detection.toml", _fail_write_bytes),
}
PRECIOUS = b"a user's file that must survive\n"
# write_table to FITS makes HIERARCH cards of long meta keys, one VerifyWarning each.
quiet_hierarch = pytest.mark.filterwarnings(
    "ignore:Keyword name:astropy.io.fits.verify.VerifyWarning")


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize("writer", list(WRITERS))
def test_writer_refuses_to_overwrite(writer, small_fit, tmp_path):
    write, name, _ = WRITERS[writer]
    path = tmp_path / name
    path.write_bytes(PRECIOUS)
    with pytest.raises(OutputExistsError) as info:
        write(small_fit, path, False)
    assert str(path) in info.value.one_line()
    assert path.read_bytes() == PRECIOUS
    assert listing(tmp_path) == [name]


@quiet_hierarch
@pytest.mark.parametrize("writer", list(WRITERS))
def test_writer_overwrites_only_when_asked(writer, small_fit, tmp_path):
    write, name, _ = WRITERS[writer]
    fresh = tmp_path / f"fresh_{name}"
    write(small_fit, fresh, False)
    path = tmp_path / name
    path.write_bytes(PRECIOUS)
    write(small_fit, path, True)
    assert path.read_bytes() != PRECIOUS and path.stat().st_size > 0
    assert listing(tmp_path) == sorted([name, fresh.name])


@pytest.mark.parametrize("writer", list(WRITERS))
@pytest.mark.parametrize("existing", [False, True])
def test_failed_write_leaves_no_trace(writer, existing, small_fit, tmp_path, monkeypatch):
    """A writer that dies midway leaves an existing file intact (even with overwrite) and
    no temporary or half-written file behind."""
    write, name, break_writer = WRITERS[writer]
    path = tmp_path / name
    if existing:
        path.write_bytes(PRECIOUS)
    before = listing(tmp_path)
    break_writer(monkeypatch)
    with pytest.raises((RuntimeError, OSError)):
        write(small_fit, path, True)
    assert listing(tmp_path) == before
    if existing:
        assert path.read_bytes() == PRECIOUS


def test_cli_refuses_to_overwrite_outputs(des_sample, tmp_path, capsys):
    manifest = write_doc(tmp_path, small_doc(des_sample))
    table = tmp_path / "flux.ecsv"
    table.write_bytes(PRECIOUS)
    code = main(["fit", str(manifest), "--quiet", "--table", str(table)])
    out, err = capsys.readouterr()
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and str(table) in lines[0] and "not overwritten" in lines[0]
    assert table.read_bytes() == PRECIOUS
    assert listing(tmp_path) == sorted([manifest.name, table.name])
    assert main(["fit", str(manifest), "--quiet", "--table", str(table),
                 "--overwrite"]) == 0
    assert Table.read(table)["flux"][0] > 0


# -- issue 13: option values ---------------------------------------------------------------

BAD_OPTIONS = {   # smp fit options, each wrong in one way, and what the one line says
    "--shot-noise-iterations=-5": "--shot-noise-iterations: expected an integer >= 0",
    "--step=inf": "--step: expected a finite number in (0, 60]",
    "--step=nan": "--step: expected a finite number in (0, 60]",
    "--step=1e6": "--step: expected a finite number in (0, 60]",
    "--step=0": "--step: expected a finite number in (0, 60]",
    "--grid=0": "--grid: expected an integer >= 1",
    "--grid=2.5": "--grid: expected an integer >= 1",
    "--offset=nan,0": "--offset: expected finite numbers",
    "--binary=inf,0,0,1": "--binary: expected finite numbers",
    "--gain=-1": "--gain: expected a finite number > 0",
    "--gain=nan": "--gain: expected a finite number > 0",
    "--color-gi=inf": "--color-gi: expected a finite number",
    "--ra=400": "--ra: expected a finite number in [0, 360]",
    "--dec=-91": "--dec: expected a finite number in [-90, 90]",
}


@pytest.mark.parametrize("option", list(BAD_OPTIONS))
def test_bad_option_value_is_one_line(option, tmp_path, capsys):
    """Refused while parsing (before any file is read): exit 2, one line naming the option
    (``--shot-noise-iterations=-5`` and ``--step inf`` used to end in tracebacks)."""
    code = main(["fit", str(tmp_path / "never-read.toml"), option, "--quiet"])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("smp: error: smp fit: argument ")
    assert BAD_OPTIONS[option] in lines[0]
    assert "Traceback" not in err


@pytest.mark.parametrize("option, message", [
    ("--workers=0", "--workers: expected an integer >= 1"),
    ("--binary-search-if=nan", "--binary-search-if: expected a finite number"),
    ("--shot-noise-iterations=-1", "--shot-noise-iterations: expected an integer >= 0"),
    ("--step=-0.35", "--step: expected a finite number in (0, 60]"),
])
def test_bad_batch_option_value_is_one_line(option, message, tmp_path, capsys):
    code = main(["batch", str(tmp_path / "list.ecsv"), "--out", str(tmp_path / "o.ecsv"),
                 option])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and message in err
    assert listing(tmp_path) == []


def test_library_refuses_the_same_values():
    """The engine's own checks, for callers that do not go through the CLI."""
    for step in (math.inf, math.nan, 0.0, 1e6):
        with pytest.raises(ValueError, match="grid step"):
            FitSettings(grid_step_arcsec=step)
    for grid in (0, 2.5, True):
        with pytest.raises(ValueError, match="grid size"):
            FitSettings(grid_size=grid)


def test_negative_shot_noise_iterations_library(small_phot):
    with pytest.raises(ValueError, match="iterations must be >= 0"):
        small_phot.with_shot_noise(small_phot.fit_single(), gain=4.0, iterations=-5)


@pytest.fixture(scope="module")
def small_phot(des_sample):
    return DetectionPhotometry(small_manifest(des_sample))


# -- issue 13: allowed but suspicious manifests give one warning line each ------------------

def suspicious(doc: dict, what: str) -> None:
    if what == "stamp-used-twice":
        other_entry(doc)["stamp"] = detection_entry(doc)["stamp"]
    elif what == "band-mismatch":
        other_entry(doc)["band"] = "g"
    elif what == "absurd-colour":
        doc["color_gi"] = 1e6


WARNINGS = {"stamp-used-twice": "is used by exposures",
            "band-mismatch": "not in the detection's band 'Y'",
            "absurd-colour": "color_gi = 1e+06 is outside [-1, 4]"}


@pytest.mark.parametrize("what", list(WARNINGS))
def test_suspicious_manifest_warns_once_and_fits(what, tmp_path, des_sample, capsys):
    doc = small_doc(des_sample)
    suspicious(doc, what)
    path = write_doc(tmp_path, doc)
    code = main(["fit", str(path), "--quiet", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("smp: warning: "), err
    assert str(path) in lines[0] and WARNINGS[what] in lines[0]
    assert math.isfinite(json.loads(out)["flux"])


def test_sample_manifests_give_no_warning(des_sample):
    from smp_model.scene.exposures import manifest_warnings
    for name in ("eris", "2014vv39", "2014lq28"):
        assert manifest_warnings(sample_manifest(des_sample, name)) == []


def test_identical_duplicate_zeropoint_rows_are_fine(tmp_path, des_sample):
    from smp_model.inputs.zeropoints import read_zeropoints
    table = Table.read(des_sample / "zeropoints.ecsv")
    doubled = Table(table)
    doubled.add_row(list(table[0]))
    doubled.write(tmp_path / "zp.ecsv")
    assert read_zeropoints(tmp_path / "zp.ecsv") == read_zeropoints(des_sample / "zeropoints.ecsv")


# -- issue 13: no numpy warning text reaches the user ----------------------------------------

def test_numpy_warnings_are_not_printed(capsys):
    from smp_model.cli.command import _warning_to_stderr
    with np.errstate(all="warn"), pytest.warns(RuntimeWarning) as record:
        np.array([1e300]) * 1e300
    _warning_to_stderr(record[0].message, RuntimeWarning, "x.py", 1)
    _warning_to_stderr(UserWarning("a real one"), UserWarning, "x.py", 1)
    assert capsys.readouterr().err == "smp: warning: a real one\n"


# -- issue 13: the memory a fit needs is known before any PSF is read ---------------------------

N_HUGE = 3000


def huge_manifest(sample: Path, tmp: Path) -> Path:
    """3000 exposures: the real detection exposure and 2999 whose stamp and PSF files do
    not exist (the refusal must come before any of them is opened)."""
    doc = manifest_doc(sample, n_exposures=1)
    det = doc["exposures"][0]
    fake = [dict(det, expnum=1_000_000 + n, stamp=str(tmp / f"stamp_{n}.fits"),
                 psf=str(tmp / f"psf_{n}.fits")) for n in range(N_HUGE - 1)]
    doc["exposures"] = [det] + fake
    return write_doc(tmp, doc)


def test_memory_estimate_from_the_manifest(des_sample, tmp_path):
    from smp_model.limits import fit_memory_bytes
    from smp_model.scene.memory import estimate_fit_memory
    manifest = DetectionManifest.read(huge_manifest(des_sample, tmp_path))
    settings = FitSettings()
    n_par = 20 * 20 + N_HUGE
    assert fit_memory_bytes(N_HUGE, 900, settings.grid_size) == 8 * (2 * N_HUGE * 900 * n_par
                                                           + 3 * n_par ** 2)
    assert estimate_fit_memory(manifest, settings) == fit_memory_bytes(N_HUGE, 900, settings.grid_size)
    # the same number as the scene's own check on a real detection
    small = small_manifest(des_sample)
    assert estimate_fit_memory(small, settings) == fit_memory_bytes(N_EXPOSURES, 900, settings.grid_size)


def test_huge_manifest_refused_fast_in_the_library(des_sample, tmp_path, monkeypatch):
    import smp_model.scene.exposures
    manifest = huge_manifest(des_sample, tmp_path)
    monkeypatch.setattr(smp_model.scene.exposures, "load_psf",
                        lambda *a: pytest.fail("a PSF file was read"))
    with pytest.raises(ResourceLimitError, match=f"{N_HUGE} exposures") as info:
        DetectionPhotometry(manifest)
    assert str(manifest) in info.value.one_line() and "GiB" in info.value.one_line()


def test_huge_manifest_refused_by_the_cli_in_seconds(des_sample, tmp_path):
    """Issue 13 finding 4: a 3000-exposure manifest used to be refused after 85-102 s and
    7.4-8.5 GB; now in a fresh process under 10 s and 1 GB peak (imports included).

    The peak is the child's own (``os.wait4``): ``RUSAGE_CHILDREN`` would be the largest
    of every child the test session has waited for."""
    manifest = huge_manifest(des_sample, tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", _SMP_WITHOUT_PIXMAPPY, "fit", str(manifest),
                             "--quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, env=env, cwd=Path(__file__).resolve().parent.parent)
    stderr = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.returncode == 2, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "needs about" in lines[0] and f"{N_HUGE} exposures" in lines[0]
    assert seconds < 10.0
    assert usage.ru_maxrss < 1024 ** 2   # KiB on Linux


def test_folder_form_refused_before_reading_psfs(des_sample, monkeypatch):
    import smp_model.inputs.folder
    monkeypatch.setattr(smp_model.inputs.folder, "load_psf",
                        lambda *a: pytest.fail("a PSF file was read"))
    m = sample_manifest(des_sample)
    with pytest.raises(ResourceLimitError, match="2000x2000"):
        manifest_from_folder(des_sample / m.name / "stamps", des_sample / "psfs",
                             des_sample / "zeropoints.ecsv", name=m.name, ra=m.ra,
                             dec=m.dec, band=m.band, expnum=m.detection_expnum,
                             ccdnum=m.detection_ccdnum, settings=FitSettings(grid_size=2000))


# -- issue 13: quiet on a closed pipe; errors name the file the user asked for ------------------

def test_closed_stdout_is_quiet(des_sample, tmp_path):
    """``smp fit --json | head -0``: the reader is gone before the result is printed.
    Exit 141 (as if killed by SIGPIPE), nothing on stderr."""
    manifest = write_doc(tmp_path, small_doc(des_sample))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.Popen([sys.executable, "-m", "smp_model.cli", "fit", str(manifest),
                             "--json", "--quiet"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env,
                            cwd=Path(__file__).resolve().parent.parent)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) in (0, 141)
    assert err == ""


def test_failed_write_names_the_requested_file(tmp_path):
    """A writer whose temporary file vanished used to report the temporary name."""
    from smp_model.files import atomic_write
    target = tmp_path / "flux.ecsv"
    with pytest.raises(OSError) as info:
        atomic_write(target, lambda tmp: tmp.unlink())
    assert str(target) in str(info.value) and ".flux." not in str(info.value)
    assert listing(tmp_path) == []


def test_docs_state_the_trust_boundaries(repo_root):
    """Finding 8 (non-GUI part): the documentation's trust page covers every input that can
    run code and the unauthenticated Dask scheduler, with the TLS settings to use."""
    section = (repo_root / "docs" / "user_guide" / "trust.rst").read_text()
    for words in ("PSF files run code", "Manifests", "GUI sessions", "Batch lists",
                  "--tls-ca-file", "DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION",
                  "tls://"):
        assert words in section, words


def test_other_camera_allows_its_own_ccd_numbers(tmp_path, des_sample, capsys):
    """CCD 0 and 100 are no DECam CCDs, but fine for a manifest that names its camera
    (the number only identifies the exposure's CCD; the PSF file holds its WCS)."""
    doc = small_doc(des_sample)
    doc["camera"] = "HSC"
    det = detection_entry(doc)
    det["ccdnum"] = doc["detection"]["ccdnum"] = 0
    other_entry(doc)["ccdnum"] = 100
    path = write_doc(tmp_path, doc)
    assert main(["fit", str(path), "--quiet", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["flux"] > 0
    assert DetectionManifest.read(path).to_dict()["camera"] == "HSC"
