"""The Qt-free survey model (`smp_model.survey.core`): filter language, sorting, reading batch
outputs (old and new), the review sidecar and the curated export; and the simulated
survey (`smp_model.simulation.survey`) fitted by the real batch against its truth."""
from __future__ import annotations

import json
import math
import tomllib
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from smp_model.settings import FitSettings
from smp_model.simulation.survey import SurveyObject
from smp_model.survey.core import FLAG_EXPOSURE_DROPPED, Survey, flags_text, sort_indices
from smp_model.survey.filters import FilterError, compile_filter
from smp_model.survey.review import ReviewSidecar
from smp_model.survey.rotation import fit_rotation, fold
from smp_model.survey.tables import detection_mjd, read_table

NAN = math.nan


@pytest.fixture
def columns():
    return {"name": np.array(["a", "b", "a", "c", ""]),
            "chi2_dof": np.array([1.0, 2.5, NAN, 1.6, 0.9]),
            "flags": np.array([0, 2, 2 | 16, 8 | 16, 1]),   # 16: exposure_dropped
            "binary_delta_chi2": np.array([NAN, 30.0, 5.0, NAN, 100.0])}


# -- filter language ----------------------------------------------------------------------

@pytest.mark.parametrize("expression, expected", [
    ("", [0, 1, 2, 3, 4]),
    ("chi2_dof > 1.5", [1, 3]),
    ("chi2_dof <= 1", [0, 4]),                       # NaN compares false
    ("not chi2_dof <= 1", [1, 2, 3]),
    ("flags != 0", [1, 2, 3, 4]),
    ("flags & 8 != 0", [3]),
    ("flags & unresolved != 0", [3]),
    ("flags & exposure_dropped != 0", [2, 3]),
    ("binary_delta_chi2 > 25", [1, 4]),
    ('name == "a"', [0, 2]),
    ("name != 'a' and name != ''", [1, 3]),
    ("chi2_dof > 2 or flags == 1", [1, 4]),
    ("(chi2_dof > 2 or flags == 1) and binary_delta_chi2 > 50", [4]),
    ("flags & exposure_dropped != 0 and not (name == 'c')", [2]),
    ("chi2_dof > flags", [0, 1]),                    # column against column
    ("CHI2_DOF > 2", [1]),                           # column names are case-insensitive
    ("chi2_dof == nan", []),
    ("binary_delta_chi2 < inf", [1, 2, 4]),
    ("chi2_dof > 1e0", [1, 3]),
])
def test_filter_selects(columns, expression, expected):
    assert np.flatnonzero(compile_filter(expression, columns)).tolist() == expected


@pytest.mark.parametrize("expression, message", [
    ("chi2 > 1", "no column or flag 'chi2'"),
    ("chi2_dof >", "expected a column"),
    ("chi2_dof 1.5", "expected a comparison"),
    ("(chi2_dof > 1", "missing ')'"),
    ("name > 'a'", "== or != only"),
    ("name == 1", "compares text with a number"),
    ("chi2_dof > 1 chi2_dof", "unexpected"),
    ("__import__('os').system('touch /tmp/x') == 0", "cannot read"),
    ("__import__ == 0", "no column or flag '__import__'"),
    ("chi2_dof > 1; import os", "cannot read"),
    ("name & 1 == 0", "integer operands"),
])
def test_filter_errors_are_messages_not_code(columns, expression, message):
    with pytest.raises(FilterError, match=message.replace("(", r"\(").replace(")", r"\)")):
        compile_filter(expression, columns)


def test_sort_nan_last_both_ways_and_stable(columns):
    everything = np.arange(5)
    assert sort_indices(columns, everything, "chi2_dof").tolist() == [4, 0, 3, 1, 2]
    assert sort_indices(columns, everything, "chi2_dof", True).tolist() == [1, 3, 0, 4, 2]
    # equal names keep batch order; blanks last in either direction
    assert sort_indices(columns, everything, "name").tolist() == [0, 2, 1, 3, 4]
    assert sort_indices(columns, everything, "name", True).tolist() == [3, 1, 0, 2, 4]
    assert sort_indices(columns, np.array([3, 1]), "flags").tolist() == [1, 3]


def test_decode_flags():
    assert flags_text(0) == ""
    assert flags_text(4 | FLAG_EXPOSURE_DROPPED) == "position_err_undefined, exposure_dropped"
    assert flags_text(8) == "unresolved"
    assert flags_text(64 | 1) == "nonpositive_flux, bits 64"


# -- a batch output written like `smp batch` writes it ---------------------------------------

def batch_table(n: int = 6, with_new_columns: bool = True) -> Table:
    """Rows as `smp batch` writes them: detection 1 is a binary (two rows)."""
    rng = np.random.default_rng(1)
    rows = []
    for d in range(n):
        kind = "binary" if d == 1 else "single"
        for comp in (("primary", "secondary") if kind == "binary" else ("target",)):
            flux = float(rng.uniform(500, 5000))
            rows.append({"key": f"obj{d % 2}_{1000 + d}_5", "input": f"/data/{d}/detection.toml",
                         "name": f"obj{d % 2}", "expnum": 1000 + d, "ccdnum": 5,
                         "band": "ri"[d % 2],
                         "fit_kind": kind, "component": comp, "flux": flux, "flux_err": 30.0,
                         "mag": 30 - 2.5 * math.log10(flux), "mag_err": 0.02,
                         "dx": 0.1 * d + (1 if comp == "secondary" else 0),
                         "dy": -0.1 * d, "chi2": 900.0 + 10 * d, "dof": 880,
                         "flags": 2 if kind == "single" else 0,
                         "n_exposures": 6, "n_dropped": 1 if d == 3 else 0,
                         "binary_delta_chi2": 40.0 if kind == "binary" else 3.0,
                         "mjd": 57000.0 + d})
    table = Table(rows=rows)
    table.meta = {"settings": {"convention": "exact", "fit_sky": True, "grid_size": 12,
                               "grid_step_arcsec": 0.35, "oversampling": 6},
                  "binary_search_if": 25.0}
    if not with_new_columns:
        table.remove_columns(["mjd", "n_dropped", "binary_delta_chi2"])
        table.meta = {}
    return table


@pytest.fixture
def batch_out(tmp_path) -> Path:
    out = tmp_path / "fluxes.ecsv"
    batch_table().write(out)
    return out


def test_survey_one_row_per_detection(batch_out):
    survey = Survey.open(batch_out)
    assert len(survey) == 6 and len(survey.rows) == 7
    c = survey.columns
    assert c["key"][1] == "obj1_1001_5" and c["fit_kind"][1] == "binary"
    assert c["component"][1] == "primary" and c["n_sources"][1] == 2
    assert c["chi2_dof"][2] == pytest.approx(920 / 880)
    # written while a fixed-position fit set flag bit 2: read into `positions`, bit cleared
    assert c["flags"][3] == FLAG_EXPOSURE_DROPPED
    assert c["flags_text"][3] == "exposure_dropped"
    assert c["positions"].tolist() == ["fixed", "searched"] + ["fixed"] * 4
    assert survey.select("flags != 0").tolist() == [3]
    assert survey.select('positions == "searched"').tolist() == [1]
    with pytest.raises(FilterError, match='positions == "fixed"'):
        survey.select("flags & position_fixed != 0")
    assert survey.settings == FitSettings(grid_size=12)
    assert survey.notes == ["no 'positions' column in the batch output: read from its "
                            "position_fixed flag"]
    assert survey.select("binary_delta_chi2 > 25").tolist() == [1]
    assert survey.select("flags & exposure_dropped != 0").tolist() == [3]
    assert survey.select('name == "obj0"', "mjd", descending=True).tolist() == [4, 2, 0]
    binary = survey.open_spec("obj1_1001_5")
    # published order (dx1, dx2, dy1, dy2) from the batch rows
    assert binary.mode == "binary"
    assert binary.offsets == pytest.approx((0.1, 1.1, -0.1, -0.1))
    assert binary.manifest == Path("/data/1/detection.toml")
    assert survey.open_spec("obj0_1000_5").offsets == pytest.approx((0.0, 0.0))
    curve = survey.light_curve("obj0")
    assert curve["r"]["mjd"].tolist() == [57000.0, 57002.0, 57004.0]


def test_fast_ecsv_reader_matches_astropy(batch_out):
    fast, slow = read_table(batch_out), Table.read(batch_out)
    assert fast.colnames == slow.colnames
    for name in slow.colnames:
        assert np.asarray(fast[name]).tolist() == np.asarray(slow[name]).tolist(), name
    assert fast.meta["settings"]["grid_size"] == 12


def test_fits_and_csv_outputs_open(tmp_path):
    from smp_model.outputs.tables import write_table
    for suffix in (".fits", ".vot", ".csv"):
        out = tmp_path / f"fluxes{suffix}"
        write_table(batch_table(), out)
        survey = Survey.open(out)
        assert len(survey) == 6
        assert survey.select("binary_delta_chi2 > 25").tolist() == [1]
    for suffix in (".fits", ".vot"):
        assert Survey.open(tmp_path / f"fluxes{suffix}").settings == FitSettings(grid_size=12)


def test_fits_outputs_of_older_versions_still_open(tmp_path):
    """Before the PROVENANCE extension, FITS tables kept the settings in HIERARCH cards
    (nested keys joined by '_')."""
    from astropy.io import fits
    table = batch_table()
    table.meta = {}
    hdu = fits.table_to_hdu(Table(table))
    hdu.header["HIERARCH SMP settings_grid_size"] = 12
    hdu.header["HIERARCH SMP software"] = "smp-inspector 0.1.0"
    out = tmp_path / "old.fits"
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(out)
    survey = Survey.open(out)
    assert len(survey) == 6 and survey.settings == FitSettings(grid_size=12)


def test_older_batch_output_degrades(tmp_path, monkeypatch):
    out = tmp_path / "old.ecsv"
    batch_table(with_new_columns=False).write(out)
    survey = Survey.open(out)
    assert len(survey) == 6
    assert np.isnan(survey.columns["mjd"]).all()
    assert np.isnan(survey.columns["binary_delta_chi2"]).all()
    assert (survey.columns["n_dropped"] == -1).all()
    assert survey.settings == FitSettings()
    assert any("settings" in note for note in survey.notes)
    assert any("n_dropped" in note for note in survey.notes)
    assert survey.select("binary_delta_chi2 > 25").tolist() == []


def test_not_a_batch_output(tmp_path):
    from smp_model.survey.tables import SurveyError
    out = tmp_path / "other.ecsv"
    Table({"a": [1]}).write(out)
    with pytest.raises(SurveyError, match="no 'key' column"):
        Survey.open(out)
    with pytest.raises(SurveyError, match="not found"):
        Survey.open(tmp_path / "missing.ecsv")


def test_failures_are_listed(batch_out):
    Table(rows=[("bad_1_1", 7, "/x/detection.toml", "ManifestError", "/x: missing")],
          names=("key", "row", "input", "error_type", "message")).write(
        batch_out.with_name("fluxes.failures.ecsv"))
    survey = Survey.open(batch_out)
    assert survey.failures["key"].tolist() == ["bad_1_1"]


# -- review sidecar and export ------------------------------------------------------------

def test_marks_go_to_the_sidecar_never_to_the_batch(batch_out):
    before = (batch_out.read_bytes(), batch_out.stat().st_mtime_ns)
    survey = Survey.open(batch_out)
    survey.set_mark("obj1_1001_5", "binary", note="two  blobs\nclearly")
    survey.set_mark("obj0_1000_5", "bad")
    survey.set_mark("obj0_1000_5", "good")
    survey.set_mark("obj0_1002_5", "bad")
    survey.set_mark("obj0_1002_5", "")          # cleared: no entry left
    assert (batch_out.read_bytes(), batch_out.stat().st_mtime_ns) == before
    sidecar = batch_out.with_name("fluxes.review.ecsv")
    table = Table.read(sidecar)
    assert table["key"].tolist() == ["obj0_1000_5", "obj1_1001_5"]
    assert table["mark"].tolist() == ["good", "binary"]
    assert table["note"].filled("").tolist() == ["", "two blobs clearly"]
    assert [p.name for p in batch_out.parent.iterdir() if p.name.startswith(".")] == []
    again = Survey.open(batch_out)
    assert again.columns["mark"].tolist() == ["good", "binary", "", "", "", ""]
    assert again.select('mark == "binary"').tolist() == [1]
    with pytest.raises(ValueError, match="mark must be"):
        again.set_mark("obj0_1000_5", "maybe")


def test_sidecar_write_is_atomic(batch_out, monkeypatch):
    survey = Survey.open(batch_out)
    survey.set_mark("obj0_1000_5", "good")
    sidecar = survey.review.path
    saved = sidecar.read_bytes()

    def broken_write(self, *args, **kwargs):
        Path(args[0]).write_text("half a file")
        raise OSError("disk full")
    monkeypatch.setattr(Table, "write", broken_write)
    with pytest.raises(OSError, match="disk full"):
        survey.set_mark("obj0_1000_5", "bad")
    assert sidecar.read_bytes() == saved     # the previous sidecar is intact
    assert [p for p in batch_out.parent.iterdir() if p.name.startswith(".")] == []


def test_reviewed_refit_saved_with_its_request(batch_out):
    survey = Survey.open(batch_out)
    refit = Table(rows=[("binary", 1200.0, 40.0, 22.3, 0.04, 900.0, 880, 33.0),
                        ("binary", 800.0, 45.0, 22.7, 0.06, 900.0, 880, 33.0)],
                  names=("fit_kind", "flux", "flux_err", "mag", "mag_err", "chi2", "dof",
                         "delta_chi2"))
    refit.meta = {"offsets": [0.0, 2.0, 0.0, 1.0]}
    survey.review.set_reviewed("obj1_1001_5", refit, {"mode": "binary", "settings": {
        "grid_size": 12}})
    survey.review.save()
    entry = ReviewSidecar.for_batch(batch_out).entries["obj1_1001_5"]
    assert entry.reviewed["reviewed_flux"] == 1200.0
    assert entry.reviewed["reviewed_flux2"] == 800.0
    assert entry.reviewed["reviewed_offsets"] == "0,2,0,1"
    assert json.loads(entry.reviewed["reviewed_request"])["mode"] == "binary"


@pytest.mark.parametrize("suffix", [".ecsv", ".fits", ".csv"])
def test_curated_export_joins_marks(batch_out, tmp_path, suffix):
    survey = Survey.open(batch_out)
    survey.set_mark("obj1_1001_5", "binary", note="pair")
    survey.set_mark("obj0_1000_5", "bad")
    out = survey.export_curated(tmp_path / f"curated{suffix}")
    table = Table.read(out)
    assert len(table) == 7
    marks = dict(zip(np.asarray(table["key"]).astype(str),
                     np.asarray(table["mark"]).astype(str)))
    assert marks["obj1_1001_5"] == "binary" and marks["obj0_1000_5"] == "bad"
    assert np.ma.filled(table["flux"], np.nan).tolist() == \
        pytest.approx(survey.rows["flux"].tolist())
    filtered = Table.read(survey.export_curated(tmp_path / f"only{suffix}",
                                                keys=["obj1_1001_5"]))
    assert filtered["component"].tolist() == ["primary", "secondary"]
    from smp_model.files import OutputExistsError
    with pytest.raises(OutputExistsError):
        survey.export_curated(out)
    from smp_model.survey.tables import SurveyError
    with pytest.raises(SurveyError, match="refusing"):
        survey.export_curated(batch_out, overwrite=True)


# -- MJD ------------------------------------------------------------------------------

def test_detection_mjd_from_manifest_key_then_stamp(tmp_path):
    stamp = tmp_path / "s.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(np.zeros((2, 2)), name="SCI")]).writeto(stamp)
    manifest = tmp_path / "detection.toml"
    text = ('format = "smp-detection/1"\nname = "x"\nra = 1.0\ndec = 2.0\nband = "r"\n'
            '[detection]\nexpnum = 5\nccdnum = 3\n'
            '[[exposures]]\nexpnum = 4\nccdnum = 3\nmjd = 1.0\nstamp = "s.fits"\n'
            '[[exposures]]\nexpnum = 5\nccdnum = 3\n{mjd}stamp = "s.fits"\n')
    manifest.write_text(text.format(mjd="mjd = 57001.25\n"))
    assert detection_mjd(manifest) == 57001.25
    manifest.write_text(text.format(mjd=""))
    assert math.isnan(detection_mjd(manifest))
    with fits.open(stamp, mode="update") as hdus:
        hdus["SCI"].header["MJD-OBS"] = 56999.5
    assert detection_mjd(manifest) == 56999.5
    assert math.isnan(detection_mjd(tmp_path / "missing.toml"))


# -- the simulated survey, fitted by the real batch ----------------------------------------

def test_simulated_survey_files(tiny_survey):
    folder, _, truth = tiny_survey
    assert len(truth) == 10 and sorted(set(truth["name"])) == ["binary", "flagged", "rotator"]
    listing = Table.read(folder / "detections.ecsv")
    manifest = folder / listing["manifest"][0]
    doc = tomllib.loads(manifest.read_text())
    det = [e for e in doc["exposures"] if e["expnum"] == doc["detection"]["expnum"]][0]
    assert det["mjd"] == pytest.approx(truth["mjd"][0])
    assert all("mjd" in e for e in doc["exposures"])
    flagged = truth[truth["flagged_exposure"]]
    assert flagged["name"].tolist() == ["flagged"]
    # the rotator's true magnitudes follow the injected sinusoid
    objects = {o["name"]: o for o in truth.meta["objects"]}
    rot = truth[truth["name"] == "rotator"]
    period = objects["rotator"]["period_hours"]
    phase = 2 * np.pi * (rot["mjd"] - 56530.0) * 24 / period
    offset = np.where(rot["band"] == "i", -0.3, 0.0)
    assert np.asarray(rot["mag"]) == pytest.approx(20.6 + offset + 0.3 * np.sin(phase))


def test_simulated_survey_found_by_the_filters(tiny_survey):
    folder, out, truth = tiny_survey
    survey = Survey.open(out)
    assert len(survey) == 10 and survey.notes == []
    names = survey.columns["name"]
    # the flagged exposure is dropped by the fit and flagged by the survey
    flagged = survey.select("flags & exposure_dropped != 0")
    assert survey.keys[flagged].tolist() == truth["key"][truth["flagged_exposure"]].tolist()
    assert survey.columns["n_dropped"][flagged].tolist() == [1]
    # the binary is kept as a binary (delta chi2 > 25) and nothing else is
    binaries = survey.select("binary_delta_chi2 > 25")
    assert set(names[binaries]) == {"binary"} and len(binaries) >= 1
    assert set(survey.columns["fit_kind"][binaries]) == {"binary"}
    # the MJDs are the truth's, and the rotator's light curve recovers the injected one
    by_key = {k: i for i, k in enumerate(survey.keys)}
    rows = [by_key[k] for k in truth["key"]]
    assert survey.columns["mjd"][rows] == pytest.approx(np.asarray(truth["mjd"]))
    rot = truth["name"] == "rotator"
    fitted = survey.columns["mag"][rows][rot]
    errors = survey.columns["mag_err"][rows][rot]
    pulls = (fitted - np.asarray(truth["mag"][rot])) / np.hypot(errors, 0.01)
    assert np.all(np.abs(pulls) < 5), pulls
    curve = survey.light_curve("rotator")
    assert sum(len(d["mjd"]) for d in curve.values()) == 6
    # folded at the injected period, a sinusoid recovers the injected amplitude
    rotation = fit_rotation(curve["r"]["mjd"], curve["r"]["mag"], curve["r"]["mag_err"], 7.3)
    assert rotation.amplitude_mag == pytest.approx(0.6, abs=max(0.05,
                                                               3 * rotation.amplitude_err))
    assert rotation.mean_mag == pytest.approx(20.6, abs=0.05)


def test_fit_rotation_recovers_an_exact_sinusoid():
    rng = np.random.default_rng(2)
    mjd = np.sort(rng.uniform(56500, 58000, 12))
    phase = fold(mjd, 9.0)
    mag = 21.0 + 0.2 * np.cos(2 * np.pi * (phase - 0.3))
    fit = fit_rotation(mjd, mag, np.full(12, 0.01), 9.0)
    assert (fit.mean_mag, fit.amplitude_mag, fit.phase_max_faint) == \
        pytest.approx((21.0, 0.4, 0.3), abs=1e-9)
    assert fit.chi2 == pytest.approx(0.0, abs=1e-12) and fit.n == 12
    assert fit.model(phase) == pytest.approx(mag)
    assert fit_rotation(mjd[:3], mag[:3], np.full(3, 0.01), 9.0) is None


def test_smp_simulate_survey_command(tmp_path, monkeypatch, capsys):
    """`smp simulate --survey DIR` writes the survey and prints its batch list."""
    import smp_model.simulation.survey as survey_sim
    from smp_model.cli.command import main
    real = survey_sim.simulate_survey
    small = (SurveyObject("steady", 2, 21.0),)
    monkeypatch.setattr(survey_sim, "simulate_survey",
                        lambda *a, **k: real(*a, objects=small, **k))
    assert main(["simulate", "--survey", str(tmp_path / "s")]) == 0
    listing = Path(capsys.readouterr().out.strip())
    assert listing == tmp_path / "s" / "detections.ecsv"
    assert len(Table.read(listing)) == 2
    assert main(["simulate", "--survey", str(tmp_path / "s")]) == 2   # not empty: refused
    assert "not empty" in capsys.readouterr().err
    assert main(["simulate"]) == 2
    assert "needs OUTDIR" in capsys.readouterr().err


def test_text_that_reads_as_numbers_stays_text(tmp_path):
    table = batch_table()
    table["name"] = ["007"] * len(table)
    out = tmp_path / "fluxes.ecsv"
    table.write(out)
    survey = Survey.open(out)
    assert set(survey.columns["name"]) == {"007"}
    assert survey.select('name == "007"').tolist() == list(range(6))
