"""``smp fit`` writes its outputs as one transaction (issue 27): every output path is
checked before the fit, the files are written to temporaries and renamed together only
when all of them were written; on any failure none is left (nor a temporary), what the
user had is unchanged, and the one error line names the file asked for."""
from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from astropy.io import fits
from astropy.table import Table
from badinputs import is_root
from helpers import make_synthetic_detection

from smp_model.cli.command import main
from smp_model.inputs.manifest import DetectionManifest


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return make_synthetic_detection(tmp_path_factory.mktemp("transaction_synth"),
                                    n_exposures=2, shape=(24, 24), target_flux=3000.0, seed=5)


@pytest.fixture
def no_fit(monkeypatch):
    """Makes any fit fail loudly: the refusals below must come before the fit."""
    def fit_not_expected(*args, **kwargs):
        raise AssertionError("the fit ran before the outputs were checked")
    monkeypatch.setattr("smp_model.fit.measure.measure", fit_not_expected)


def smp_fit(capsys, synthetic, *options) -> tuple[int, str]:
    code = main(["fit", str(synthetic.manifest_path), "--quiet", *map(str, options)])
    out, err = capsys.readouterr()
    return code, err


def one_error_line(code: int, err: str, *words) -> str:
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("smp: error: "), err
    for word in words:
        assert str(word) in lines[0], lines[0]
    return lines[0]


def test_one_path_for_two_outputs_is_refused_before_the_fit(capsys, synthetic, tmp_path,
                                                             no_fit):
    """Issue 27: the table was written, then the cube refused, the table left behind."""
    out = tmp_path / "result.fits"
    code, err = smp_fit(capsys, synthetic, "--table", out, "--fits", out)
    one_error_line(code, err, out, "--table", "--fits")
    assert list(tmp_path.iterdir()) == []


def test_one_file_by_two_spellings_is_refused(capsys, synthetic, tmp_path, no_fit):
    (tmp_path / "sub").mkdir()
    table, regions = tmp_path / "out.ecsv", tmp_path / "sub" / ".." / "out.ecsv"
    code, err = smp_fit(capsys, synthetic, "--table", table, "--regions", regions)
    one_error_line(code, err, "--table", "--regions")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sub"]


def test_an_input_is_never_an_output_even_with_overwrite(capsys, synthetic, no_fit):
    manifest = synthetic.manifest_path
    before = manifest.read_bytes()
    code, err = smp_fit(capsys, synthetic, "--table", manifest.with_suffix(".ecsv"),
                        "--regions", manifest, "--overwrite")
    one_error_line(code, err, manifest, "manifest this run reads", "--regions")
    assert manifest.read_bytes() == before
    assert not manifest.with_suffix(".ecsv").exists()


def test_output_in_a_folder_that_is_a_file(capsys, synthetic, tmp_path, no_fit):
    """Root may write anywhere, but not below a regular file: the check that holds for
    every user.  The message names the file asked for."""
    blocker = tmp_path / "results"
    blocker.write_text("not a folder\n")
    table = blocker / "flux.ecsv"
    code, err = smp_fit(capsys, synthetic, "--fits", tmp_path / "cube.fits",
                        "--table", table)
    line = one_error_line(code, err, table, "not a folder")
    assert ".flux." not in line   # no hidden temporary name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results"]


@pytest.mark.skipif(is_root(), reason="root writes into read-only folders")
def test_read_only_folder_names_the_file_asked_for(capsys, synthetic, tmp_path, no_fit):
    """Issue 27: the error named the hidden temporary file."""
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        code, err = smp_fit(capsys, synthetic, "--table", folder / "flux.ecsv")
    finally:
        folder.chmod(0o755)
    line = one_error_line(code, err, folder / "flux.ecsv", "not writable")
    assert ".flux." not in line
    assert list(folder.iterdir()) == []


def test_unknown_formats_are_refused_before_the_fit(capsys, synthetic, tmp_path, no_fit):
    code, err = smp_fit(capsys, synthetic, "--table", tmp_path / "t.ecsv",
                        "--figure", tmp_path / "figure.jpg")
    one_error_line(code, err, tmp_path / "figure.jpg", ".png")
    code, err = smp_fit(capsys, synthetic, "--table", tmp_path / "t.txt")
    one_error_line(code, err, tmp_path / "t.txt", "unknown table format")
    assert list(tmp_path.iterdir()) == []


def fill_disk_on_cube(monkeypatch) -> None:
    """The cube's write fails as on a full disk, after half its bytes reached the disk."""
    real_writeto = fits.HDUList.writeto

    def writeto(self, name, *args, **kwargs):
        if "cube" in os.path.basename(str(name)):
            real_writeto(self, name, *args, **kwargs)
            with open(name, "r+b") as f:
                f.truncate(os.path.getsize(name) // 2)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(name))
        return real_writeto(self, name, *args, **kwargs)
    monkeypatch.setattr(fits.HDUList, "writeto", writeto)


@pytest.fixture
def full_disk_on_cube(monkeypatch):
    fill_disk_on_cube(monkeypatch)


def test_full_disk_leaves_nothing_and_the_rerun_works(capsys, synthetic, tmp_path,
                                                      monkeypatch, full_disk_on_cube):
    """Issue 27: the table stayed while the cube failed, the error named neither file,
    and the re-run stopped on "exists; not overwritten"."""
    table, cube, regions = tmp_path / "flux.ecsv", tmp_path / "cube.fits", tmp_path / "t.reg"
    outputs = ("--table", table, "--fits", cube, "--regions", regions)
    code, err = smp_fit(capsys, synthetic, *outputs)
    line = one_error_line(code, err, cube, "No space left on device")
    assert ".cube." not in line
    assert list(tmp_path.iterdir()) == []   # no output, no temporary
    monkeypatch.undo()
    code, err = smp_fit(capsys, synthetic, *outputs, "--json")
    assert code == 0, err
    assert len(Table.read(table)) == 1
    with fits.open(cube) as hdul:
        assert "SOURCES" in hdul
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cube.fits", "flux.ecsv", "t.reg"]


def test_failed_overwrite_keeps_what_the_user_had(capsys, synthetic, tmp_path, monkeypatch):
    """With --overwrite, a failure keeps the old files byte for byte (none half-replaced)."""
    table, cube, folder = tmp_path / "flux.ecsv", tmp_path / "cube.fits", tmp_path / "new"
    code, err = smp_fit(capsys, synthetic, "--table", table, "--fits", cube)
    assert code == 0, err
    before = {p: p.read_bytes() for p in (table, cube)}
    fill_disk_on_cube(monkeypatch)
    code, err = smp_fit(capsys, synthetic, "--table", table, "--fits", cube,
                        "--regions", folder / "deeper" / "t.reg", "--overwrite")
    one_error_line(code, err, cube)
    assert {p: p.read_bytes() for p in before} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cube.fits", "flux.ecsv"]


def test_interrupted_fit_leaves_no_manifest(capsys, des_sample, tmp_path, monkeypatch):
    """The folder form's --write-manifest is one of the outputs: Ctrl-C during the fit
    leaves none (the manifest was written before the fit)."""
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr("smp_model.fit.measure.measure", interrupted)
    eris = des_sample / "eris"
    shipped = DetectionManifest.read(eris / "detection.toml")
    code = main(["fit", "--stamps", str(eris / "stamps"), "--psfs", str(des_sample / "psfs"),
                 "--zeropoints", str(des_sample / "zeropoints.ecsv"), "--name", "eris",
                 "--ra", repr(shipped.ra), "--dec", repr(shipped.dec), "--band", "Y", "--expnum", "234928",
                 "--ccdnum", "20", "--quiet", "--write-manifest", str(tmp_path / "eris.toml"),
                 "--table", str(tmp_path / "flux.ecsv")])
    assert code == 130 and "interrupted" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_write_manifest_needs_the_folder_form(capsys, synthetic, tmp_path, no_fit):
    """It was ignored without a word when a manifest was given."""
    code, err = smp_fit(capsys, synthetic, "--write-manifest", tmp_path / "m.toml")
    one_error_line(code, err, "--write-manifest", "folder form")
    assert list(tmp_path.iterdir()) == []


def test_a_rename_that_fails_puts_every_old_file_back(capsys, synthetic, tmp_path,
                                                      monkeypatch):
    """The last step can fail too (the cube's rename, after the table's): the table
    already renamed is taken back and both old files are restored."""
    table, cube = tmp_path / "flux.ecsv", tmp_path / "cube.fits"
    code, err = smp_fit(capsys, synthetic, "--table", table, "--fits", cube)
    assert code == 0, err
    before = {p: p.read_bytes() for p in (table, cube)}
    real_replace = os.replace

    def replace(source, destination):
        new = Path(source).name.startswith(".cube.") and ".old." not in Path(source).name
        if Path(destination) == cube and new:   # the new cube's rename, not the restore
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return real_replace(source, destination)
    monkeypatch.setattr(os, "replace", replace)
    code, err = smp_fit(capsys, synthetic, "--table", table, "--fits", cube, "--overwrite")
    line = one_error_line(code, err, cube, os.strerror(errno.EIO))
    assert ".cube." not in line
    assert {p: p.read_bytes() for p in before} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cube.fits", "flux.ecsv"]
