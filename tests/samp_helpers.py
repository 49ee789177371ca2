"""A real SAMP hub (pyvo.samp's) in the test process, reached through its own lock file
($SAMP_HUB, so no user's hub is touched), and tools that record what they receive."""
from __future__ import annotations

import threading
import time
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
from astropy.table import Table
from pyvo.samp import SAMPHubServer, SAMPIntegratedClient

LOADS = ("table.load.votable", "image.load.fits", "table.highlight.row",
         "table.select.rowList")


class Recorder:
    """A SAMP client named like a tool (``samp.name``) that answers every call with
    samp.ok and records (mtype, params, what its URL held: a Table or the file bytes)."""

    def __init__(self, name: str, mtypes=LOADS):
        self.messages: list[tuple[str, dict, object]] = []
        self.lock = threading.Lock()
        self.client = SAMPIntegratedClient(name=name)
        self.client.connect()
        for mtype in mtypes:
            self.client.bind_receive_call(mtype, self._call)
            self.client.bind_receive_notification(mtype, self._notification)

    def _record(self, mtype, params):
        content = None
        if "url" in params and mtype.endswith(".load.votable"):
            content = Table.read(_path(params["url"]), format="votable")
        elif "url" in params and mtype == "image.load.fits":
            content = _path(params["url"]).read_bytes()
        with self.lock:
            self.messages.append((mtype, params, content))

    def _call(self, private_key, sender_id, msg_id, mtype, params, extra):
        self._record(mtype, params)
        self.client.reply(msg_id, {"samp.status": "samp.ok", "samp.result": {}})

    def _notification(self, private_key, sender_id, mtype, params, extra):
        self._record(mtype, params)

    def of(self, mtype: str) -> list[tuple[dict, object]]:
        with self.lock:
            return [(p, c) for m, p, c in self.messages if m == mtype]

    def wait_for(self, mtype: str, n: int = 1, timeout: float = 10.0):
        end = time.monotonic() + timeout
        while len(self.of(mtype)) < n:
            if time.monotonic() > end:
                raise AssertionError(f"{mtype} x{n} not received: {self.messages}")
            time.sleep(0.02)
        return self.of(mtype)

    def send(self, mtype: str, **params) -> None:
        """Notify every client subscribed to ``mtype`` (as TOPCAT does on a selection)."""
        self.client.enotify_all(mtype, **params)

    def close(self) -> None:
        self.client.disconnect()


def _path(url: str) -> Path:
    return Path(unquote(urlparse(url).path))


@pytest.fixture
def samp_hub(tmp_path, monkeypatch):
    """A running hub whose lock file only this test's clients find."""
    lockfile = tmp_path / "samp-lock"
    monkeypatch.setenv("SAMP_HUB", f"std-lockurl:{lockfile.as_uri()}")
    hub = SAMPHubServer(web_profile=False, lockfile=str(lockfile), mode="multiple")
    hub.start()
    yield hub
    hub.stop()


@pytest.fixture
def no_hub(tmp_path, monkeypatch):
    """$SAMP_HUB pointing at a lock file that does not exist: no hub runs."""
    monkeypatch.setenv("SAMP_HUB", f"std-lockurl:{(tmp_path / 'no-hub').as_uri()}")


@pytest.fixture
def tools(samp_hub):
    """TOPCAT-, DS9- and Aladin-named recorders on the test hub."""
    made = {name: Recorder(name) for name in ("topcat", "ds9", "Aladin")}
    yield made
    for tool in made.values():
        tool.close()
