"""Sending results to Virtual Observatory tools (TOPCAT, DS9, Aladin) over SAMP, and
hearing which rows they select, with `pyvo.samp`.

`SampLink` is one registration with the running hub (found as the SAMP standard profile
says: ``$SAMP_HUB`` or ``~/.samp``).  Tables go as VOTables (``table.load.votable``;
written by `smp_model.outputs.votable`: VO units, UCDs, the metadata as PARAMs), images
as FITS files with a celestial WCS (``image.load.fits``), row choices as
``table.highlight.row`` and ``table.select.rowList`` on a table sent before (its
``table-id``); the same two messages coming from a tool reach `SampLink.on_rows`.

Row indices in SAMP messages are 0-based rows of the table as it was sent.  Every call
that waits on the hub or on a tool gives up after `SAMP_TIMEOUT_S` seconds with a
`SampError`, so that a hub that has died or a tool that does not answer cannot hang the
caller.  Nothing here imports Qt: the GUI calls these through its controller.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import SMPError

if TYPE_CHECKING:
    from astropy.table import Table

# astropy.io.fits and the VOTable writer are imported where they are used: `smp send`'s
# parser reads this module's constants, and `smp --version` should not pay for astropy.

__all__ = ["HIGHLIGHT_ROW", "LOAD_IMAGE", "LOAD_TABLE", "SAMP_TIMEOUT_S", "SELECT_ROWS",
           "SEND_TARGETS", "RowMessage", "SampError", "SampLink",
           "SentTable", "table_file_kind", "write_panel_images"]

SAMP_TIMEOUT_S = 5.0

# Menu name -> the ``samp.name`` a tool registers with (None: every subscribed client).
SEND_TARGETS = {"TOPCAT": "topcat", "DS9": "ds9", "Aladin": "aladin", "all clients": None}

LOAD_TABLE, LOAD_IMAGE = "table.load.votable", "image.load.fits"
HIGHLIGHT_ROW, SELECT_ROWS = "table.highlight.row", "table.select.rowList"


class SampError(SMPError):
    """No SAMP hub, no such tool on it, or the hub or a tool did not answer in time."""


@dataclass(frozen=True)
class SentTable:
    """A table sent to the hub: its SAMP ``table-id``, the URL of the VOTable and, when
    sent with a key column, each row's key (to map the tools' row indices back)."""

    table_id: str
    url: str
    name: str
    n_rows: int
    row_keys: tuple[str, ...] = ()

    def is_for(self, message: "RowMessage") -> bool:
        """Whether ``message`` is about this table (by table-id, else by URL)."""
        if message.table_id is not None:
            return message.table_id == self.table_id
        return message.url == self.url

    def keys_of(self, rows: Sequence[int]) -> list[str]:
        """Keys of 0-based ``rows`` (in order, without repeats; rows out of range left
        out)."""
        return list(dict.fromkeys(self.row_keys[r] for r in rows
                                  if 0 <= r < len(self.row_keys)))

    def rows_of(self, key: str) -> list[int]:
        """0-based rows whose key is ``key`` (a binary has two)."""
        return [r for r, k in enumerate(self.row_keys) if k == key]


@dataclass(frozen=True)
class RowMessage:
    """Rows a tool chose in a table we sent: ``kind`` is `HIGHLIGHT_ROW` (one row) or
    `SELECT_ROWS`; ``rows`` are 0-based rows of the table as sent."""

    kind: str
    table_id: str | None
    url: str | None
    rows: tuple[int, ...]


def write_panel_images(fit, folder: str | os.PathLike) -> list[Path]:
    """The detection exposure's five panels (`smp_model.fit.panels`) as FITS images, one
    file each, with BUNIT (counts on zeropoint 30) and the stamp's celestial WCS
    (`smp_model.outputs.stamp_wcs.stamp_wcs`, the cube's), so that DS9 and Aladin place
    them on the sky."""
    from astropy.io import fits

    from ..fit.panels import PANEL_KEYS, PANEL_TITLES, five_panels
    from .stamp_wcs import stamp_wcs
    panels = five_panels(fit)
    header = stamp_wcs(fit.scene.detection).header
    name = fit.manifest.name
    paths = []
    for key in PANEL_KEYS:
        hdu = fits.PrimaryHDU(panels[key].astype("float32"), header=header.copy())
        hdu.header["BUNIT"] = ("ct", "counts on zeropoint 30")
        hdu.header["OBJECT"] = name
        hdu.header["EXPNUM"], hdu.header["CCDNUM"] = panels.expnum, panels.ccdnum
        hdu.header["PANEL"] = (PANEL_TITLES[key], "SMP panel")
        path = Path(folder) / f"{name}_{panels.expnum}_{key}.fits"
        hdu.writeto(path, overwrite=True)
        paths.append(path)
    return paths


def table_file_kind(path: str | os.PathLike) -> str:
    """``"image"`` for a FITS file whose first HDU with data is an image (a panel, a cube
    of `write_fits`: what DS9 and Aladin show of it), else ``"table"`` (ECSV, VOTable,
    CSV, FITS tables)."""
    from astropy.io import fits
    path = Path(path)
    if not path.is_file():
        raise SampError("file not found" if not path.exists() else "is not a file", path)
    try:
        with fits.open(path, memmap=False) as hdul:
            kinds = [type(hdu) for hdu in hdul if hdu.data is not None]
    except OSError:
        return "table"   # not FITS
    images = (fits.PrimaryHDU, fits.ImageHDU, fits.CompImageHDU)
    return "image" if kinds and issubclass(kinds[0], images) else "table"


class SampLink:
    """A client registered with the running SAMP hub (``connect`` first; a context
    manager).  Files it writes for the tools live in a folder of its own until `close`.

    Parameters
    ----------
    name : str
        What the tools show as the sender (``samp.name``).
    timeout : float
        Seconds to wait for the hub or a tool before `SampError`.
    """

    def __init__(self, name: str = "SMP Inspector", timeout: float = SAMP_TIMEOUT_S):
        from pyvo.samp import SAMPIntegratedClient
        self.name = name
        self.timeout = float(timeout)
        self._client = SAMPIntegratedClient(name=name, description="Scene modelling "
                                            "photometry of moving objects", callable=True)
        self._folder = tempfile.TemporaryDirectory(prefix="smp-samp-")
        self._row_listeners: list[Callable[[RowMessage], None]] = []

    # -- connection ---------------------------------------------------------------------

    def connect(self) -> "SampLink":
        """Register with the hub; `SampError` (one line) if none answers in time."""
        # A registration that completes after the timeout is undone: the hub would
        # otherwise list a stray "SMP Inspector" no one answers for.
        _, error = self._within_timeout(self._client.connect, "connecting to the SAMP hub",
                                        undo_late=self._client.disconnect)
        if error is not None:
            raise SampError(f"no SAMP hub answered ({error}); start TOPCAT, DS9 or "
                            "Aladin (each runs a hub) and try again")
        for mtype in (HIGHLIGHT_ROW, SELECT_ROWS):
            self._client.bind_receive_notification(mtype, self._receive_notification)
            self._client.bind_receive_call(mtype, self._receive_call)
        return self

    @property
    def connected(self) -> bool:
        """Registered, as far as this client knows (`alive` asks the hub)."""
        return self._client.is_connected

    def alive(self) -> bool:
        """Whether the hub still answers (a ping, within the timeout)."""
        return self.connected and self._within_timeout(self._client.ping, "ping")[1] is None

    def close(self) -> None:
        """Unregister (if registered) and remove the files written for the tools."""
        if self._client.is_connected:
            self._within_timeout(self._client.disconnect, "disconnecting")
        self._folder.cleanup()

    def __enter__(self) -> "SampLink":
        return self.connect()

    def __exit__(self, *exc) -> None:
        self.close()

    def _within_timeout(self, call: Callable, what: str, undo_late: Callable | None = None
                        ) -> tuple[object, str | None]:
        """Run ``call`` in a helper thread: (its value, None), or (None, its error
        message or a timeout message); an XML-RPC call to a dead hub may never return.
        ``undo_late`` is called (in that thread) if ``call`` succeeds after the timeout
        was reported: the caller has given up on what it did."""
        outcome: dict = {}
        lock = threading.Lock()

        def run():
            try:
                value, error = call(), None
            except Exception as exc:   # noqa: BLE001 - pyvo raises several kinds
                value, error = None, str(exc) or type(exc).__name__
            with lock:
                outcome.update(done=True, value=value, error=error)
                late = outcome.get("abandoned", False)
            if late and error is None and undo_late is not None:
                with contextlib.suppress(Exception):   # best effort: the hub may be gone
                    undo_late()

        thread = threading.Thread(target=run, daemon=True, name=f"samp: {what}")
        thread.start()
        thread.join(self.timeout)
        with lock:
            if not outcome.get("done"):
                outcome["abandoned"] = True
                return None, f"{what}: no answer within {self.timeout:g} s"
        return outcome["value"], outcome["error"]

    # -- who is there -------------------------------------------------------------------

    def clients(self) -> dict[str, str]:
        """Registered clients other than this one: public id -> ``samp.name``."""
        self._require_connection()
        own = self._client.get_public_id()
        return {cid: str(self._client.get_metadata(cid).get("samp.name", cid))
                for cid in self._client.get_registered_clients() if cid != own}

    def subscribed(self, mtype: str, target: str | None) -> list[str]:
        """Ids of the clients subscribed to ``mtype`` whose ``samp.name`` is ``target``
        (case-insensitive; None: all)."""
        self._require_connection()
        subscribed = set(self._client.get_subscribed_clients(mtype))
        return [cid for cid, name in self.clients().items() if cid in subscribed
                and (target is None or name.lower() == target.lower())]

    def recipients(self, mtype: str, target: str | None) -> list[str]:
        """`subscribed`, or `SampError` if there is none."""
        chosen = self.subscribed(mtype, target)
        if not chosen:
            who = "no client" if target is None else f"no {target!r}"
            raise SampError(f"{who} registered with the SAMP hub accepts {mtype}")
        return chosen

    def _require_connection(self) -> None:
        if not self._client.is_connected:
            raise SampError("not connected to a SAMP hub")

    # -- sending ------------------------------------------------------------------------

    def send_table(self, table: Table, name: str, target: str | None = None,
                   key_column: str | None = None) -> SentTable:
        """Send ``table`` as a VOTable (``table.load.votable``) to ``target`` (a
        ``samp.name``, None: every client that loads tables); waits for each to answer.
        ``key_column``: the column whose values `SentTable.keys_of` gives for rows."""
        table_id = f"smp-{uuid.uuid4().hex[:12]}"
        from .votable import write_votable
        path = write_votable(table, Path(self._folder.name) / f"{table_id}.xml")
        keys = tuple(str(k) for k in table[key_column]) if key_column else ()
        sent = SentTable(table_id, path.as_uri(), name, len(table), keys)
        self._send(LOAD_TABLE, target, url=sent.url, name=name, **{"table-id": table_id})
        return sent

    def send_image(self, path: str | os.PathLike, name: str | None = None,
                   target: str | None = None) -> None:
        """Send a FITS image file (``image.load.fits``) by its URL."""
        path = Path(path).absolute()
        self._send(LOAD_IMAGE, target, url=path.as_uri(), name=name or path.stem,
                   **{"image-id": path.stem})

    def send_panels(self, fit, target: str | None = None) -> list[Path]:
        """Send the detection exposure's five panels (`write_panel_images`)."""
        paths = write_panel_images(fit, self._folder.name)
        for path in paths:
            self.send_image(path, target=target)
        return paths

    def send_fit(self, fit, target: str | None = None) -> SentTable | None:
        """A fit's flux table (`smp_model.outputs.tables.fit_table`) to the clients of
        ``target`` that load tables, and its five panels (`send_panels`) to those that
        load FITS images; the sent table, if any.  `SampError` if none loads either."""
        from .tables import fit_table
        tables = bool(self.subscribed(LOAD_TABLE, target))
        images = bool(self.subscribed(LOAD_IMAGE, target))
        if not (tables or images):
            who = "no client" if target is None else f"no {target!r}"
            raise SampError(f"{who} registered with the SAMP hub loads tables or images")
        sent = self.send_table(fit_table(fit), f"{fit.manifest.name} fluxes",
                               target) if tables else None
        if images:
            self.send_panels(fit, target)
        return sent

    def highlight_row(self, sent: SentTable, row: int, target: str | None = None) -> None:
        """Ask the tools to highlight 0-based ``row`` of a table sent before."""
        self._send(HIGHLIGHT_ROW, target, url=sent.url, row=str(int(row)),
                   **{"table-id": sent.table_id})

    def select_rows(self, sent: SentTable, rows: Sequence[int],
                    target: str | None = None) -> None:
        """Ask the tools to select 0-based ``rows`` of a table sent before."""
        self._send(SELECT_ROWS, target, url=sent.url, **{"table-id": sent.table_id},
                   **{"row-list": [str(int(r)) for r in rows]})

    def _send(self, mtype: str, target: str | None, **params) -> None:
        """Call every recipient and wait for its answer (so that a file it loads by URL
        is read before the caller may remove it); errors name the tool."""
        names = self.clients()
        message = {"samp.mtype": mtype, "samp.params": params}
        wait = str(max(1, int(round(self.timeout))))
        for cid in self.recipients(mtype, target):
            response, error = self._within_timeout(
                lambda cid=cid: self._client.call_and_wait(cid, message, wait),
                f"{names[cid]} did not answer {mtype}")
            if error is None and response.get("samp.status") == "samp.error":
                error = response.get("samp.error", {}).get("samp.errortxt", "failed")
            if error is not None:
                raise SampError(f"{names[cid]}: {error}")

    # -- receiving ------------------------------------------------------------------------

    def on_rows(self, listener: Callable[[RowMessage], None]) -> None:
        """Call ``listener(RowMessage)`` (in the SAMP client's thread) when a tool sends
        ``table.highlight.row`` or ``table.select.rowList``."""
        self._row_listeners.append(listener)

    def _receive_notification(self, private_key, sender_id, mtype, params, extra):
        self._dispatch(mtype, params)

    def _receive_call(self, private_key, sender_id, msg_id, mtype, params, extra):
        self._dispatch(mtype, params)
        self._client.reply(msg_id, {"samp.status": "samp.ok", "samp.result": {}})

    def _dispatch(self, mtype: str, params: dict) -> None:
        raw = [params.get("row")] if mtype == HIGHLIGHT_ROW else params.get("row-list", [])
        rows = tuple(int(r) for r in raw if r is not None and str(r).strip().isdigit())
        message = RowMessage(mtype, params.get("table-id"), params.get("url"), rows)
        for listener in self._row_listeners:
            listener(message)
