"""Shared test set-up: headless Qt and the location of the real DES sample."""

import os
from pathlib import Path

import pytest

# Before anything imports Qt: without a display and without this, QApplication aborts pytest.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository's top directory."""
    return REPO_ROOT


@pytest.fixture(scope="session")
def des_sample() -> Path:
    """The real DES sample: $SMP_DES_SAMPLE, else <repo>/../shared/des-sample.

    The sample is required (CI has it). Set SMP_ALLOW_NO_SAMPLE=1 to skip the tests
    that need it instead of failing them.
    """
    path = Path(os.environ.get("SMP_DES_SAMPLE") or REPO_ROOT.parent / "shared" / "des-sample")
    if not path.is_dir():
        message = (
            f"DES sample not found at {path} (set SMP_DES_SAMPLE to its directory, "
            "or SMP_ALLOW_NO_SAMPLE=1 to skip the tests that need it)"
        )
        if os.environ.get("SMP_ALLOW_NO_SAMPLE") == "1":
            pytest.skip(message)
        pytest.fail(message, pytrace=False)
    return path.resolve()


@pytest.fixture(scope="session")
def tiny_survey(tmp_path_factory):
    """(folder, batch output, truth): a 10-detection simulated survey fitted by the real
    batch (tests/survey_helpers.py); ~40 s, once per session."""
    from survey_helpers import make_tiny_survey
    return make_tiny_survey(tmp_path_factory.mktemp("survey"))


@pytest.fixture
def fresh_inspector(qapp, tmp_path):
    """A new inspector window for one test, shown, with its own settings file (trusted
    folders, geometry: nothing carried over from the user's or another test's)."""
    from tests.helpers import shown_inspector
    with shown_inspector(tmp_path / "smp.ini") as window:
        yield window
