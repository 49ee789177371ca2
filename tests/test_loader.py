"""smp_gui.loader: a detection built in a child process is the one built here."""
from __future__ import annotations

import multiprocessing
import pickle
import time

import numpy as np
import pytest

from smp_gui import loader
from smp_model.errors import ManifestError, SMPError, StampError
from smp_model.fit.photometry import DetectionPhotometry
from smp_model.settings import FitSettings

pytestmark = pytest.mark.skipif(not loader.available(), reason="needs a forkserver (POSIX)")

START = (0.0, 1.0, 0.0, 1.0)


def _no_cancel():
    pass


def _build_children() -> list:
    return [p for p in multiprocessing.active_children() if p.name == loader.PROCESS_NAME]


def test_child_build_fits_like_a_local_build(des_sample):
    path = str(des_sample / "2014lq28" / "detection.toml")
    messages = []
    remote = loader.build_in_child(path, FitSettings(), lambda f, m: messages.append((f, m)),
                                   _no_cancel)
    with pytest.warns(Warning):
        local = DetectionPhotometry(path, FitSettings())
    assert [ex.entry.expnum for ex in remote.exposures] == \
        [ex.entry.expnum for ex in local.exposures]
    assert remote.dropped == local.dropped and len(remote.dropped) == 2
    assert messages and messages[-1][0] == pytest.approx(1.0)
    a, b = remote.fit_binary(START), local.fit_binary(START)
    assert [s.flux for s in a.sources] == [s.flux for s in b.sources]
    assert [s.ra for s in a.sources] == [s.ra for s in b.sources]
    np.testing.assert_array_equal(a.model, b.model)
    # dropped exposures by expnum: the child's manifest entries are other objects (they were
    # compared by identity once, and every exposure came out "dropped")
    assert a.dropped_expnums == b.dropped_expnums == [239649, 580880]
    # The arrays arrived through writable buffers: code may modify them as its own.
    assert remote.scene.static_design.flags.writeable
    assert remote.exposures[0].image.flags.writeable
    assert _build_children() == []


def test_child_error_arrives_with_its_type_file_and_message(tmp_path, des_sample):
    from badinputs import broken_stamp, manifest_doc, other_entry, write_doc
    doc = manifest_doc(des_sample, "eris", n_exposures=2)
    stamp = broken_stamp(tmp_path, doc, other_entry(doc), MSK=None)   # no mask HDU
    path = str(write_doc(tmp_path, doc))
    with pytest.raises(SMPError) as local:
        DetectionPhotometry(path)
    with pytest.raises(SMPError) as remote:
        loader.build_in_child(path, FitSettings(), lambda f, m: None, _no_cancel)
    assert type(remote.value) is type(local.value) is StampError
    assert (remote.value.message, remote.value.source) == \
        (local.value.message, local.value.source)
    assert remote.value.source == str(stamp)
    assert "Traceback" in str(remote.value.__cause__)   # the child's, for --debug
    assert _build_children() == []


def test_cancel_terminates_the_child(des_sample):
    path = str(des_sample / "2014lq28" / "detection.toml")

    class Stop(Exception):
        pass

    started = time.monotonic()

    def cancel_after_first_progress():
        if progress_seen:
            raise Stop

    progress_seen: list = []
    with pytest.raises(Stop):
        loader.build_in_child(path, FitSettings(), lambda f, m: progress_seen.append(m),
                              cancel_after_first_progress)
    assert progress_seen
    assert time.monotonic() - started < 30
    assert _build_children() == []


@pytest.mark.parametrize("error", [SMPError("bad", "/a/file.fits"), StampError("short"),
                                   ManifestError("missing key 'ra'", "detection.toml")])
def test_engine_errors_pickle_with_message_and_source(error):
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert (copy.message, copy.source, str(copy)) == (error.message, error.source, str(error))


def test_a_child_that_dies_is_reported_naming_the_detection(des_sample):
    import os
    import signal
    path = str(des_sample / "2014lq28" / "detection.toml")

    def kill_child(fraction, message):
        for child in _build_children():
            os.kill(child.pid, signal.SIGKILL)

    with pytest.raises(loader.BuildProcessError) as error:
        loader.build_in_child(path, FitSettings(), kill_child, _no_cancel)
    assert error.value.source == path
    assert "ended unexpectedly" in error.value.message and "-9" in error.value.message
    assert _build_children() == []
