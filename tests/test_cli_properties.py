"""``smp fit`` on randomly damaged inputs (issue 27): a manifest with a key removed or
retyped, a stamp with bytes flipped or cut, or compressed and then damaged.  Whatever it
gets, ``smp fit`` (CLI main()) exits 0 with a finite flux and its table written, or exits
2 with one ``smp: error:`` line and no output at all (nor a temporary); never a
traceback, never a partial output.

Bounded for ``./dev test`` (derandomised, a few dozen examples); the longer run sets
``SMP_PROPERTY_EXAMPLES``, e.g. ``SMP_PROPERTY_EXAMPLES=2000 .venv/bin/python -m pytest
tests/test_cli_properties.py`` (docs: developer testing).
"""
from __future__ import annotations

import copy
import gzip
import json
import math
import os
import tempfile
from pathlib import Path

import pytest
from helpers import absolute_manifest_dict, make_synthetic_detection, write_toml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smp_model.cli.command import main

EXAMPLES = int(os.environ.get("SMP_PROPERTY_EXAMPLES", "30"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize=EXAMPLES <= 30,
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.function_scoped_fixture])

# Keys of a manifest and of each of its tables, as `DetectionManifest.read` knows them.
TOP_KEYS = ("name", "ra", "dec", "band", "color_gi", "camera", "detection", "exposures")
EXPOSURE_KEYS = ("expnum", "ccdnum", "band", "zeropoint", "stamp", "psf", "stamp_origin",
                 "target_xy", "gain", "mjd")
values = st.one_of(st.none(), st.integers(-2**40, 2**40),
                   st.floats(allow_nan=True, allow_infinity=True), st.booleans(),
                   st.text(max_size=12), st.lists(st.integers(-5, 70), max_size=3))


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return make_synthetic_detection(tmp_path_factory.mktemp("cli_properties"),
                                    n_exposures=2, shape=(20, 20), target_flux=4000.0,
                                    seed=3)


@pytest.fixture(scope="module")
def scratch():
    with tempfile.TemporaryDirectory(prefix="smp-cli-properties-") as folder:
        yield Path(folder)


def mutate(doc: dict, table: str, key: str, value) -> dict:
    """``doc`` with ``key`` of ``table`` ("top", "detection" or "exposure N") set to
    ``value`` (None: removed)."""
    doc = copy.deepcopy(doc)
    target = (doc if table == "top" else doc["detection"] if table == "detection"
              else doc["exposures"][int(table.split()[1])])
    if value is None:
        target.pop(key, None)
    else:
        target[key] = value
    return doc


def damage(data: bytes, cut: int | None, flips: list[tuple[int, int]], compress: bool) -> bytes:
    data = bytearray(gzip.compress(data, mtime=0) if compress else data)
    for position, value in flips:
        data[position % len(data)] = value
    return bytes(data[:cut] if cut is not None else data)


def assert_all_or_error(code: int, out: str, err: str, outputs: Path) -> None:
    assert "Traceback" not in err, err
    left = sorted(p.name for p in outputs.iterdir())
    if code == 0:
        flux = json.loads(out)["flux"]
        assert math.isfinite(flux), out
        assert left == ["flux.ecsv"], left
        return
    assert code == 2, err
    lines = err.strip().splitlines()
    errors = [line for line in lines if line.startswith("smp: error: ")]
    assert len(errors) == 1 and errors[0] == lines[-1], err
    assert all(line.startswith("smp: warning: ") for line in lines[:-1]), err
    assert left == [], left   # no partial output, no temporary


def run_fit(capsys, manifest: Path, outputs: Path) -> tuple[int, str, str]:
    for old in outputs.iterdir():
        old.unlink()
    code = main(["fit", str(manifest), "--quiet", "--json", "--table",
                 str(outputs / "flux.ecsv")])
    out, err = capsys.readouterr()
    return code, out, err


def test_random_manifest_mutations(capsys, synthetic, scratch):
    base = absolute_manifest_dict(synthetic.manifest_path)
    outputs = scratch / "manifest-out"
    outputs.mkdir()
    tables = ["top", "detection", *(f"exposure {n}" for n in range(len(base["exposures"])))]

    @SETTINGS
    @given(table=st.sampled_from(tables), key=st.sampled_from(TOP_KEYS + EXPOSURE_KEYS),
           value=values)
    def check(table, key, value):
        try:
            path = write_toml(scratch / "detection.toml", mutate(base, table, key, value))
        except (TypeError, ValueError):   # a value TOML cannot hold (None in a list)
            return
        assert_all_or_error(*run_fit(capsys, path, outputs), outputs)

    check()


def test_random_stamp_damage(capsys, synthetic, scratch):
    base = absolute_manifest_dict(synthetic.manifest_path)
    exposure = base["exposures"][synthetic.detection_index]
    real = Path(exposure["stamp"]).read_bytes()
    outputs = scratch / "stamp-out"
    outputs.mkdir()

    @SETTINGS
    @given(cut=st.one_of(st.none(), st.integers(0, len(real))),
           flips=st.lists(st.tuples(st.integers(0, len(real) - 1), st.integers(0, 255)),
                          max_size=6),
           compress=st.booleans())
    def check(cut, flips, compress):
        stamp = scratch / ("stamp.fits.gz" if compress else "stamp.fits")
        stamp.write_bytes(damage(real, cut, flips, compress))
        doc = copy.deepcopy(base)
        doc["exposures"][synthetic.detection_index]["stamp"] = str(stamp)
        path = write_toml(scratch / "detection.toml", doc)
        assert_all_or_error(*run_fit(capsys, path, outputs), outputs)

    check()
