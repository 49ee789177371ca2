"""One measurement record (issue 12): the flux table, JSON, cubes and region file of one
`smp fit` run describe the same fit, in units and frames other tools read as they are."""
from __future__ import annotations

import gc
import json
import math
import subprocess
import sys
import weakref

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.table import QTable
from astropy.wcs import WCS
from helpers import make_synthetic_detection

from smp_model.cli.command import main
from smp_model.fit.measure import measure
from smp_model.fit.photometry import DetectionPhotometry
from smp_model.fit.request import FitRequest, TargetOffsets
from smp_model.inputs.manifest import DetectionManifest
from smp_model.outputs.columns import FLAGS, NJY_PER_COUNT, RETIRED_FLAGS, decode_flags
from smp_model.outputs.record import fit_record
from smp_model.scene.exposures import load_exposures

pytestmark = pytest.mark.filterwarnings("ignore::smp_model.scene.exposures.DroppedExposureWarning")


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return make_synthetic_detection(tmp_path_factory.mktemp("record_synth"), n_exposures=3,
                                    target_flux=3000.0, seed=11)


@pytest.fixture(scope="module")
def lq28_run(des_sample, tmp_path_factory):
    """`smp fit 2014lq28 --binary=0,1,0,1 --optimize` with every output."""
    out = tmp_path_factory.mktemp("lq28")
    paths = {"table": out / "t.ecsv", "fits": out / "c.fits", "regions": out / "r.reg"}
    manifest = des_sample / "2014lq28" / "detection.toml"
    proc = subprocess.run([sys.executable, "-m", "smp_model.cli", "fit", str(manifest),
                           "--binary=0,1,0,1", "--optimize", "--table", str(paths["table"]),
                           "--fits", str(paths["fits"]), "--regions", str(paths["regions"]),
                           "--json", "--quiet"], capture_output=True, text=True, check=True)
    return dict(paths, json=json.loads(proc.stdout), manifest=manifest)


def test_table_and_json_agree_in_published_order(lq28_run):
    doc, table = lq28_run["json"], QTable.read(lq28_run["table"])
    assert table.meta["offsets"] == doc["offsets"]
    assert table.meta["offsets_order"] == doc["offsets_order"] == "dx1,dx2,dy1,dy2"
    p, s = doc["primary"], doc["secondary"]
    assert doc["offsets"] == [p["dx"], s["dx"], p["dy"], s["dy"]]
    assert table.meta["exposures_dropped"] == doc["dropped_exposures"] == [239649, 580880]
    for k, name in enumerate(("primary", "secondary")):
        assert table["flux"][k] == pytest.approx(doc[name]["flux"], rel=1e-12)


def test_units_users_expect(lq28_run):
    table = QTable.read(lq28_run["table"])
    assert table["mag"].unit == u.ABmag and table["mag_limit_3sigma"].unit == u.ABmag
    np.testing.assert_allclose(table["flux_njy"].to_value(u.nJy), 3.631 * table["flux"],
                               rtol=1e-12)
    assert NJY_PER_COUNT == pytest.approx(3.631, rel=1e-12)
    # AB: the table's magnitudes are those of its nJy fluxes (astropy's AB zero flux is
    # 3630.78 Jy, the 3631 Jy convention's 7e-5 mag from it)
    np.testing.assert_allclose(table["flux_njy"].to(u.ABmag).value, table["mag"].value,
                               atol=1e-4)
    assert table["ra"].unit == u.deg and table["dec"].unit == u.deg
    assert "mjd" in table.colnames   # the sample has no MJD: NaN, not missing
    assert table["total_flux"][0] == pytest.approx(table["flux"][0] + table["flux"][1])


def test_cube_wcs_places_the_detection_on_the_target(lq28_run):
    manifest = DetectionManifest.read(lq28_run["manifest"])
    exposures, _ = load_exposures(manifest)
    detection = [ex.entry.expnum for ex in exposures].index(manifest.detection_expnum)
    assert detection > 0   # in the manifest, not first: the cube puts it first
    in_cube = [exposures[detection]] + exposures[:detection] + exposures[detection + 1:]
    with fits.open(lq28_run["fits"]) as hdul:
        assert hdul[0].header["NEXPOSUR"] == len(exposures) == 9
        assert hdul[1].header["EXTNAME"] == "IMAGE" and hdul[1].header["DETECTN"]
        for k, ex in enumerate(in_cube):
            for name in ("IMAGE", "MODEL", "RESIDUAL", "WEIGHT", "MASK"):
                hdu = hdul[name, k + 1]
                assert hdu.header["EXPNUM"] == ex.entry.expnum
                assert hdu.header["DETECTN"] == (k == 0)
                assert hdu.data.shape == ex.shape
                assert name == "MASK" or hdu.header["BUNIT"]
            header = hdul["IMAGE", k + 1].header
            x, y = WCS(header).all_world2pix(manifest.ra, manifest.dec, 1)
            expected = (ex.target_xy[0] - ex.origin[0] + 1, ex.target_xy[1] - ex.origin[1] + 1)
            assert math.hypot(x - expected[0], y - expected[1]) < 0.01
            assert 0 <= header["WCSFITRS"] < 0.2
        # the EXPOSURES table follows the cube's order
        assert list(hdul["EXPOSURES"].data["expnum"]) == [ex.entry.expnum for ex in in_cube]
        # masked pixels are marked, not zeroed: the residual keeps its value there
        assert np.all(np.isfinite(hdul["RESIDUAL", 1].data))
        assert set(np.unique(hdul["MASK", 1].data)) <= {0, 1}


def test_region_file_parses_with_sources_on_the_fit(lq28_run):
    from regions import CirclePixelRegion, CircleSkyRegion, PolygonSkyRegion, Regions
    shapes = Regions.read(lq28_run["regions"], format="ds9")
    circles = [s for s in shapes if isinstance(s, CircleSkyRegion)]
    assert [c.meta["text"] for c in circles] == ["primary", "secondary"]
    for circle, name in zip(circles, ("primary", "secondary")):
        src = lq28_run["json"][name]
        true = SkyCoord(src["ra"], src["dec"], unit="deg")
        assert circle.center.separation(true).arcsec < 0.01
        assert circle.radius.to_value(u.arcsec) == pytest.approx(1.0, rel=1e-4)
    assert any(isinstance(s, PolygonSkyRegion) for s in shapes)
    assert not any(isinstance(s, CirclePixelRegion) for s in shapes)
    # ICRS, the frame of the table's ra/dec: the digits are the table's (8 decimals)
    assert all(s.center.frame.name == "icrs" for s in circles)
    table = QTable.read(lq28_run["table"])
    for circle, row in zip(circles, table):
        assert circle.center.ra.deg == pytest.approx(row["ra"].value, abs=5e-9)
        assert circle.center.dec.deg == pytest.approx(row["dec"].value, abs=5e-9)


def test_flag_registry_decodes_every_bit():
    bits = [f.bit for f in FLAGS]
    # live and retired bits together: distinct powers of two, none reused
    every = sorted(bits + [f.bit for f in RETIRED_FLAGS])
    assert every == [1 << k for k in range(len(every))]
    assert decode_flags(0) == ()
    assert decode_flags(2) == ("bits 2",)          # retired: no flag owns it
    assert decode_flags(1 | 8) == ("nonpositive_flux", "unresolved")
    assert decode_flags(sum(bits)) == tuple(f.name for f in FLAGS)


def test_target_offsets_published_order_round_trip():
    offsets = TargetOffsets.from_published((1.0, 2.0, 3.0, 4.0))
    assert offsets.positions == ((1.0, 3.0), (2.0, 4.0))
    assert offsets.published == (1.0, 2.0, 3.0, 4.0)
    np.testing.assert_array_equal(offsets.array, [[1, 3], [2, 4]])
    assert TargetOffsets.from_array(offsets.array) == offsets
    assert offsets.shifted(1, 0.5, -0.5).published == (1.0, 2.5, 3.0, 3.5)
    assert TargetOffsets.from_published((0.5, -0.5)).mode == "single"
    with pytest.raises(ValueError, match="1 or 2 sources"):
        TargetOffsets(())
    with pytest.raises(ValueError, match="finite"):
        TargetOffsets.from_published((0.0, math.nan))
    with pytest.raises(ValueError, match="needs offsets"):
        FitRequest(mode="binary", offsets=(0.0, 0.0))


def test_cli_batch_and_gui_projections_agree(synthetic, tmp_path, capsys):
    """The same request through the CLI, the batch worker and the GUI's summary gives
    identical numbers in every field they share."""
    from smp_gui.controller import summarize
    from smp_model.batch.items import BatchItem
    from smp_model.batch.worker import BatchOptions, fit_detection
    table_path = tmp_path / "cli.ecsv"
    assert main(["fit", str(synthetic.manifest_path), "--optimize", "--table",
                 str(table_path), "--json", "--quiet"]) == 0
    cli_json = json.loads(capsys.readouterr().out)
    cli = QTable.read(table_path)
    manifest = DetectionManifest.read(synthetic.manifest_path)
    item = BatchItem(row=1, key="synthetic", input=str(synthetic.manifest_path),
                     manifest=manifest)
    outcome = fit_detection(item, BatchOptions(optimize_position=True))
    assert outcome["ok"], outcome
    batch = outcome["table"]
    request = FitRequest(optimize=True)
    gui = summarize(measure(DetectionPhotometry(manifest), request))
    shared = [c for c in cli.colnames if c in batch.colnames]
    assert len(shared) == len(cli.colnames)
    for name in shared:
        a, b = np.asarray(cli[name]), np.asarray(batch[name])
        assert np.array_equal(a, b) or np.allclose(a, b, rtol=1e-10, equal_nan=True), name
    for name in ("flux", "flux_err", "flux_err_total", "dx", "ra"):
        value = u.Quantity(cli[name][0]).value
        assert getattr(gui.sources[0], name) == pytest.approx(value, rel=1e-10)
        assert cli_json[name] == pytest.approx(value, rel=1e-10)
    assert gui.record.rows[0].keys() == set(cli.colnames)
    assert cli.meta["offsets"] == batch.meta["offsets"] == list(gui.offsets)


def test_record_is_cheap_and_meta_lazy(synthetic):
    fit = DetectionPhotometry(synthetic.manifest_path).fit_binary((0, 1, 0, 1))
    record = fit_record(fit)
    assert "meta" not in record.__dict__            # not computed for a drag refit
    assert record.meta["per_exposure"] and "meta" in record.__dict__
    assert record.rows[0]["positions"] == "fixed" and record.rows[0]["flags"] == 0
    assert fit_record(fit) is record                # built once per fit (smp fit writes 3)
    assert record.output_meta().keys() == record.meta.keys()
    assert not record.rows[0]["flags"] & 8          # never "unresolved" at fixed positions


def test_a_fit_and_its_record_are_freed_together(synthetic):
    """A batch worker or the stress run fits detection after detection: a fit whose record
    was made must not outlive its user (it holds the scene's design matrix; a weak-keyed
    cache whose records referred to their fits kept every one alive)."""
    fit = DetectionPhotometry(synthetic.manifest_path).fit_single()
    assert fit_record(fit).rows[0]["flux"] == fit.flux
    alive = weakref.ref(fit)
    del fit
    gc.collect()
    assert alive() is None


def test_binary_seed_grids_cover_each_pair_once():
    from smp_model.fit.binary_search import _separation_grid
    full = _separation_grid(0.5, 3.0)
    half = _separation_grid(0.5, 3.0, half_plane=True)
    assert len(full) == 2 * len(half)
    assert not np.any(np.all(full == 0, axis=1))
    assert np.all(np.hypot(*full.T) <= 3.0 + 1e-9)
    # every +-d appears once in the half plane
    keys = {tuple(d) for d in half}
    assert all((tuple(d) in keys) != (tuple(-d) in keys) for d in full)


def test_binary_search_never_fits_worse_than_one_source(synthetic):
    """The first seed keeps the best single source and adds a free secondary, so even from
    a start on top of each other the search ends at delta chi2 >= 0."""
    phot = DetectionPhotometry(synthetic.manifest_path)
    fit = phot.optimize_binary((0.0, 0.0, 0.0, 0.0))
    assert fit.delta_chi2 >= 0 and fit.chi2 <= phot.optimize_single().chi2 + 1e-6
    assert fit.search_starts == 4
