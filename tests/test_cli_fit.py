"""``smp fit``: JSON output per issue 2, output files, no silent overwrite, the folder form,
and the one-line exit-2 errors.  Most runs use a small synthetic detection (fast); the
JSON contract is checked on the real sample."""
from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from helpers import absolute_manifest_dict, make_synthetic_detection, write_toml

from smp_model.cli.command import main
from smp_model.inputs.manifest import DetectionManifest

SINGLE_KEYS = {"flux", "flux_err", "mag", "mag_err", "chi2", "dof", "convention", "timings"}
SOURCE_KEYS = {"flux", "flux_err", "mag", "mag_err", "dx", "dy", "dx_err", "dy_err"}
BINARY_KEYS = {"primary", "secondary", "chi2", "chi2_single", "delta_chi2", "separation",
               "separation_err", "separation_arcsec", "position_angle", "offsets",
               "n_chi2_evaluations", "timings", "flux", "flux_err"}


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, *words):
    assert code == 2
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    errors = [line for line in lines if "error" in line]
    assert len(errors) == 1 and errors[0] == lines[-1], err
    for word in words:
        assert str(word) in errors[0], errors[0]


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return make_synthetic_detection(tmp_path_factory.mktemp("cli_synth"), n_exposures=3,
                                    target_flux=3000.0, seed=11)


# -- JSON on the real sample --------------------------------------------------------------

def test_json_single_on_eris(capsys, des_sample):
    # The reference flux was computed with Piff's own draws ("model" normalisation).
    code, out, err = run(capsys, "fit", des_sample / "eris" / "detection.toml", "--json",
                         "--quiet", "--psf-normalization", "model")
    assert code == 0
    doc = json.loads(out)          # stdout holds exactly one JSON object
    assert SINGLE_KEYS <= doc.keys()
    assert "total_s" in doc["timings"] and doc["timings"]["total_s"] > 0
    assert doc["convention"] == "exact" and doc["dof"] == 4993
    assert doc["flux"] == pytest.approx(37742.60, abs=0.05 * 918.88)
    assert doc["mag"] == pytest.approx(30 - 2.5 * math.log10(doc["flux"]), abs=1e-9)
    assert isinstance(doc["dof"], int)


def test_json_binary_on_lq28(capsys, des_sample):
    code, out, err = run(capsys, "fit", des_sample / "2014lq28" / "detection.toml",
                         "--binary=0,1,0,1", "--optimize", "--json")
    assert code == 0
    doc = json.loads(out)
    assert BINARY_KEYS <= doc.keys()
    for name in ("primary", "secondary"):
        assert SOURCE_KEYS <= doc[name].keys()
        assert all(isinstance(doc[name][k], float) for k in SOURCE_KEYS)   # errors fitted
    assert doc["flux"] == doc["primary"]["flux"]
    assert doc["flux_err"] == doc["primary"]["flux_err"]
    p, s = doc["primary"], doc["secondary"]
    assert doc["offsets"] == [p["dx"], s["dx"], p["dy"], s["dy"]]
    assert doc["delta_chi2"] == pytest.approx(doc["chi2_single"] - doc["chi2"])
    assert doc["separation"] == pytest.approx(2.8, abs=0.2)
    assert doc["n_chi2_evaluations"] > 10
    assert "total_s" in doc["timings"]
    # Progress and the two dropped-exposure warnings go to stderr, not stdout.
    assert "239649" in err and "580880" in err


# -- outputs ---------------------------------------------------------------------------------

def test_outputs_written_readable_and_never_clobbered(capsys, synthetic, tmp_path):
    table, cube, figure = tmp_path / "flux.ecsv", tmp_path / "cubes.fits", tmp_path / "fig.png"
    args = ["fit", synthetic.manifest_path, "--table", table, "--fits", cube,
            "--figure", figure, "--json", "--quiet"]
    code, out, err = run(capsys, *args)
    assert code == 0
    doc = json.loads(out)
    t = Table.read(table)
    assert len(t) == 1 and t["flux"][0] == pytest.approx(doc["flux"])
    assert t["flux_err"][0] == pytest.approx(doc["flux_err"])
    with fits.open(cube) as hdul:
        images = [h for h in hdul if h.name in ("IMAGE", "MODEL", "RESIDUAL", "MASK")]
        assert len(images) == 4 * 3 and all(h.data.shape == (30, 30) for h in images)
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    before = {p: p.read_bytes() for p in (table, cube, figure)}
    for path in (table, cube, figure):
        single = ["fit", synthetic.manifest_path, "--quiet",
                  {table: "--table", cube: "--fits", figure: "--figure"}[path], path]
        code, out, err = run(capsys, *single)
        assert_one_line_error(code, err, path)
        assert len(err.strip().splitlines()) == 1
    assert {p: p.read_bytes() for p in before} == before
    code, out, err = run(capsys, *args, "--overwrite")
    assert code == 0 and Table.read(table)["flux"][0] == pytest.approx(doc["flux"])
    # Only the three outputs: no temporary files left behind.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cubes.fits", "fig.png", "flux.ecsv"]


@pytest.mark.parametrize("suffix", [".fits", ".csv"])
def test_table_formats_by_extension(capsys, synthetic, tmp_path, suffix):
    path = tmp_path / f"flux{suffix}"
    code, out, err = run(capsys, "fit", synthetic.manifest_path, "--binary=0,1.5,0,-1",
                         "--table", path, "--quiet")
    assert code == 0
    t = Table.read(path)
    assert len(t) == 2 and np.all(np.isfinite(t["flux"]))


# -- the folder form ----------------------------------------------------------------------------

def test_folder_form_writes_a_reproducible_manifest(capsys, des_sample, tmp_path):
    shipped = DetectionManifest.read(des_sample / "eris" / "detection.toml")
    written = tmp_path / "eris.toml"
    folder = ["fit", "--stamps", des_sample / "eris" / "stamps", "--psfs", des_sample / "psfs",
              "--zeropoints", des_sample / "zeropoints.ecsv", "--name", "eris",
              "--ra", repr(shipped.ra), "--dec", repr(shipped.dec), "--band", "Y",
              "--expnum", "234928", "--ccdnum", "20", "--json", "--quiet",
              "--psf-normalization", "model"]   # as the reference flux
    code, out, err = run(capsys, *folder, "--write-manifest", written)
    assert code == 0
    doc = json.loads(out)
    assert doc["flux"] == pytest.approx(37742.60, abs=0.05 * 918.88)
    again = DetectionManifest.read(written)
    assert {e.expnum: (e.stamp_origin, e.zeropoint, e.stamp, e.psf) for e in again.exposures} \
        == {e.expnum: (e.stamp_origin, e.zeropoint, e.stamp, e.psf) for e in shipped.exposures}
    # The written manifest reproduces the run.
    code, out2, err = run(capsys, "fit", written, "--json", "--quiet",
                          "--psf-normalization", "model")
    assert code == 0 and json.loads(out2)["flux"] == pytest.approx(doc["flux"], rel=1e-12)
    # And is not overwritten silently.
    code, out, err = run(capsys, *folder, "--write-manifest", written)
    assert_one_line_error(code, err, written)


# -- bad inputs -----------------------------------------------------------------------------------

def test_missing_manifest(capsys, tmp_path):
    path = tmp_path / "nope.toml"
    code, out, err = run(capsys, "fit", path, "--json")
    assert_one_line_error(code, err, path, "not found")
    assert out == ""


def test_manifest_with_missing_key(capsys, synthetic, tmp_path):
    doc = absolute_manifest_dict(synthetic.manifest_path)
    del doc["exposures"][1]["zeropoint"]
    path = write_toml(tmp_path / "bad.toml", doc)
    code, out, err = run(capsys, "fit", path)
    assert_one_line_error(code, err, path, "exposures[1].zeropoint")


def test_broken_stamp(capsys, synthetic, tmp_path):
    doc = absolute_manifest_dict(synthetic.manifest_path)
    stamp = tmp_path / "broken.fits"
    stamp.write_bytes(b"not a FITS file at all")
    doc["exposures"][2]["stamp"] = str(stamp)
    path = write_toml(tmp_path / "bad.toml", doc)
    code, out, err = run(capsys, "fit", path)
    assert_one_line_error(code, err, stamp)


def test_missing_psf_file(capsys, synthetic, tmp_path):
    doc = absolute_manifest_dict(synthetic.manifest_path)
    doc["exposures"][0]["psf"] = str(tmp_path / "gone_piff.fits")
    path = write_toml(tmp_path / "bad.toml", doc)
    code, out, err = run(capsys, "fit", path, "--quiet")
    assert_one_line_error(code, err, "gone_piff.fits")


def test_shot_noise_without_a_gain_is_refused_before_any_psf(capsys, synthetic, tmp_path):
    """--shot-noise with no gain (none in the manifest, no --gain) is refused before the
    PSFs are read and rendered: with every PSF file missing the error is about the gain.
    The batch refuses such a detection the same way."""
    from smp_model.batch.items import BatchItem
    from smp_model.batch.worker import BatchOptions, fit_detection
    doc = absolute_manifest_dict(synthetic.manifest_path)
    for k, entry in enumerate(doc["exposures"]):
        entry["psf"] = str(tmp_path / f"gone_{k}_piff.fits")
    path = write_toml(tmp_path / "no_gain.toml", doc)
    code, out, err = run(capsys, "fit", path, "--shot-noise", "--quiet")
    assert_one_line_error(code, err, path, "no gain for the detection", "--gain")
    assert "gone_" not in err

    item = BatchItem(row=1, key="no_gain", input=str(path),
                     manifest=DetectionManifest.read(path))
    outcome = fit_detection(item, BatchOptions(shot_noise=True))
    assert not outcome["ok"] and "no gain" in outcome["message"], outcome
    assert "gone_" not in outcome["message"]


def test_folder_form_incomplete(capsys, des_sample):
    code, out, err = run(capsys, "fit", "--stamps", des_sample / "eris" / "stamps",
                         "--psfs", des_sample / "psfs", "--zeropoints",
                         des_sample / "zeropoints.ecsv", "--name", "eris")
    assert_one_line_error(code, err, "--ra", "--expnum")


@pytest.mark.parametrize("case", ["missing manifest", "broken stamp"])
def test_errors_in_a_real_process(synthetic, tmp_path, case):
    """The installed entry point: exit status 2, exactly one stderr line, no traceback."""
    if case == "missing manifest":
        target, named = tmp_path / "absent.toml", tmp_path / "absent.toml"
    else:
        doc = absolute_manifest_dict(synthetic.manifest_path)
        named = tmp_path / "broken.fits"
        named.write_text("garbage")
        doc["exposures"][0]["stamp"] = str(named)
        target = write_toml(tmp_path / "bad.toml", doc)
    proc = subprocess.run([sys.executable, "-m", "smp_model.cli", "fit", str(target),
                           "--quiet", "--json"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(named) in lines[0] and "Traceback" not in proc.stderr
