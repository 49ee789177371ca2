"""FITS files the engine writes are valid FITS: fitsverify (HEASARC's checker, where it is
installed; ``./dev test`` installs it on Debian) reports no warning and no error on the
cube and the flux table of a binary fit of 2014lq28; astropy's own verification otherwise.
"""
from __future__ import annotations

import re
import shutil
import subprocess

import pytest
from astropy.io import fits

from smp_model.cli.command import main

FITSVERIFY = shutil.which("fitsverify")


def _fitsverify_counts(path) -> tuple[int, int]:
    """(warnings, errors) fitsverify reports for ``path``."""
    run = subprocess.run([FITSVERIFY, "-q", str(path)], capture_output=True, text=True,
                         timeout=60)
    found = re.search(r"(\d+) warnings? and (\d+) errors?", run.stdout)
    if "verification OK" in run.stdout:
        return 0, 0
    assert found, run.stdout + run.stderr
    return int(found[1]), int(found[2])


@pytest.fixture(scope="module")
def lq28_binary_outputs(des_sample, tmp_path_factory):
    out = tmp_path_factory.mktemp("fits")
    cube, table = out / "cube.fits", out / "table.fits"
    assert main(["fit", str(des_sample / "2014lq28" / "detection.toml"), "--binary=0,1,0,1",
                 "--fits", str(cube), "--table", str(table), "--quiet"]) == 0
    return cube, table


@pytest.mark.parametrize("which", ["cube", "table"])
def test_fits_outputs_verify_cleanly(lq28_binary_outputs, which):
    path = dict(zip(("cube", "table"), lq28_binary_outputs))[which]
    with fits.open(path) as hdul:
        hdul.verify("exception")
        # the provenance is long text: its CONTINUE cards declare their convention
        assert any("LONGSTRN" in hdu.header for hdu in hdul)
    if FITSVERIFY:
        assert _fitsverify_counts(path) == (0, 0)
