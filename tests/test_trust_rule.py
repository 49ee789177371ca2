"""The trust rule (issue 27), through ``smp fit``: PSF files (which run code when read) from
outside the manifest's folder are named, decided on the files that would be opened
(`smp_model.inputs.manifest.paths_outside`): a link inside the folder to a file outside is
outside, ``..`` that comes back is inside, one file named twice is counted once, and on a
case-sensitive file system ``Data/`` is not ``data/``."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from helpers import absolute_manifest_dict, make_synthetic_detection, write_toml

from smp_model.cli.command import main


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return make_synthetic_detection(tmp_path_factory.mktemp("trust_synth"), n_exposures=2,
                                    shape=(20, 20), target_flux=4000.0, seed=2)


def trust_lines(capsys, manifest: Path, fits: bool = True) -> list[str]:
    """The trust lines of ``smp fit manifest`` (said before any PSF file is read)."""
    assert main(["fit", str(manifest), "--json"]) == (0 if fits else 2)
    return [line for line in capsys.readouterr().err.splitlines() if "run code" in line]


def test_links_and_dotdot_are_followed_to_the_real_files(capsys, synthetic, tmp_path):
    doc = absolute_manifest_dict(synthetic.manifest_path)
    psfs = [Path(e["psf"]) for e in doc["exposures"]]
    folder = tmp_path / "detection"
    (folder / "sub").mkdir(parents=True)
    link = folder / "psf0.fits"
    link.symlink_to(psfs[0])   # looks inside, is outside
    doc["exposures"][0]["psf"] = str(link)
    doc["exposures"][1]["psf"] = str(folder / "sub" / ".." / ".." / ".." /
                                     psfs[1].relative_to(tmp_path.parent))
    lines = trust_lines(capsys, write_toml(folder / "detection.toml", doc))
    assert lines == [f"smp: [  0%] reading 2 PSF file(s) from outside {folder}, in "
                     f"{psfs[0].parent} (PSF files run code)"]


def test_files_inside_however_spelled_are_not_named(capsys, synthetic, tmp_path):
    doc = absolute_manifest_dict(synthetic.manifest_path)
    folder = tmp_path / "detection"
    (folder / "sub").mkdir(parents=True)
    for n, e in enumerate(doc["exposures"]):
        shutil.copyfile(e["psf"], folder / f"psf{n}.fits")
    (folder / "sub" / "alias.fits").symlink_to(folder / "psf0.fits")
    doc["exposures"][0]["psf"] = "sub/alias.fits"
    doc["exposures"][1]["psf"] = str(folder / "sub" / ".." / "psf1.fits")
    assert trust_lines(capsys, write_toml(folder / "detection.toml", doc)) == []


def test_one_file_named_twice_counts_once_and_case_matters(capsys, synthetic, tmp_path):
    doc = absolute_manifest_dict(synthetic.manifest_path)
    folder, other = tmp_path / "Data", tmp_path / "data"
    folder.mkdir()
    other.mkdir()
    if (folder / ".." / "DATA").exists():   # a case-insensitive file system
        pytest.skip("the file system does not tell Data from data")
    for n, e in enumerate(doc["exposures"]):
        shutil.copyfile(e["psf"], other / f"psf{n}.fits")
    (other / "same.fits").symlink_to(other / "psf0.fits")
    doc["exposures"][0]["psf"] = str(other / "psf0.fits")
    doc["exposures"][1]["psf"] = str(other / "same.fits")   # the same file again
    # (its WCS is exposure 100001's, so the fit then refuses exposure 100002's stamp)
    lines = trust_lines(capsys, write_toml(folder / "detection.toml", doc), fits=False)
    assert lines == [f"smp: [  0%] reading 1 PSF file(s) from outside {folder}, in {other} "
                     "(PSF files run code)"]
