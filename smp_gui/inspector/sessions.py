"""File > Save session and opening a saved session in the inspector.

A session (`smp_gui.session`) is saved only while the numbers on screen belong to the
offsets on screen, atomically, never replacing a file without asking.  Opening one
validates the whole file first (one error dialog naming the entry, nothing applied),
asks before PSF files outside its folder are read (Piff files run code when read;
`smp_gui.consent`), then restores detection, measurement, exposure and view and runs the shown fit
again.
"""
from __future__ import annotations

import json
from pathlib import Path

from PyQt6.QtWidgets import QFileDialog

from smp_model.errors import ManifestError, SMPError
from smp_model.inputs.manifest import DetectionManifest

from .. import dialogs
from ..controller import FitJob
from ..session import SESSION_SUFFIX, SessionError, parse_session
from .exports import STALE_MESSAGE
from .opening import resolve_detection_path

__all__ = ["SessionFiles"]


class SessionFiles:
    """Saving and opening sessions in ``window``.

    Parameters
    ----------
    window : InspectorWindow
    """

    def __init__(self, window):
        self.window = window
        self._pending_view: dict | None = None   # applied with the session's first fit

    def state(self) -> dict:
        """The session of what the window shows, as a JSON-able dict."""
        pv = self.window.panels_view
        return self.window.model.session(view={
            "stretch": pv.stretch, "colormap": pv.colormap_name, "invert": pv.inverted,
            "show_mask": pv.show_mask, "sky_aligned": pv.sky_aligned,
            "levels": list(pv.levels()), "range": pv.view_range()})

    def save(self, path=None) -> Path | None:
        """`InspectorWindow.save_session`."""
        from smp_model.files import atomic_output
        w = self.window
        if w.manifest_path is None:
            w.show_error("Cannot save session", SMPError("no detection is open"))
            return None
        if w.model.is_stale:
            w.show_error("Cannot save session", SMPError(STALE_MESSAGE))
            return None
        path, overwrite = self._ask_path() if path is None else self._given_path(path)
        if path is None:
            return None
        text = json.dumps(self.state(), indent=2) + "\n"
        try:
            with atomic_output(path, overwrite=overwrite) as tmp:
                tmp.write_text(text)
        except (SMPError, OSError) as exc:
            w.show_error("Cannot save session", exc, context=str(path))
            return None
        w.statusBar().showMessage(f"session saved to {path}", 5000)
        return path

    def _ask_path(self) -> tuple[Path | None, bool]:
        """(path, overwrite) chosen in the Save dialog (which asks before replacing)."""
        w = self.window
        name, _ = QFileDialog.getSaveFileName(
            w, "Save session", str(w.exporter.export_dir() / f"{w.manifest.name}"
                                   f"{SESSION_SUFFIX}"),
            f"Sessions (*{SESSION_SUFFIX} *.json)")
        if not name:
            return None, False
        path = Path(name)
        if not path.name.endswith(".json"):
            path = path.with_name(path.name + SESSION_SUFFIX)
        return path, path.exists()

    def _given_path(self, path) -> tuple[Path | None, bool]:
        """(path, overwrite) of a path given by the caller: an existing file is replaced
        only when the user says so."""
        path = Path(path)
        if not path.exists():
            return path, False
        if not dialogs.confirm_overwrite(self.window, path):
            return None, False
        return path, True

    def open(self, path, ask_consent: bool = True) -> bool:
        """`InspectorWindow.open_session` (``ask_consent`` False: a command line named
        the session, as ``smp fit`` is given a manifest)."""
        w = self.window
        path = Path(path)
        try:
            session = parse_session(path.read_text(), path)
            manifest_path = resolve_detection_path(session.detection)
            manifest = DetectionManifest.read(manifest_path)
            expnums = sorted({e.expnum for e in manifest.exposures})
            if session.selected_expnum is not None and session.selected_expnum not in expnums:
                raise SessionError(f"'selected_expnum' {session.selected_expnum} is no "
                                   f"exposure of {manifest_path} (it has {expnums[:8]}"
                                   f"{' ...' if len(expnums) > 8 else ''})")
        except SessionError as exc:
            w.show_error("Cannot open session", ManifestError(str(exc), path))
            return False
        except SMPError as exc:
            w.show_error("Cannot open session", exc, context=str(path))
            return False
        except (OSError, UnicodeDecodeError) as exc:
            w.show_error("Cannot open session", ManifestError(str(exc), path))
            return False
        if ask_consent and not w.opener.consent_to_psf_files(
                path, manifest.psf_files_outside(path.parent)):
            return False
        if not w.open_detection(manifest_path, measurement=session.measurement,
                                keep_gain=True):
            return False
        if session.fit is not None:
            w.opener.transition.wait_for(w.controller.submit(FitJob(
                str(manifest_path), session.fit.replace(optimize=True))))
        self._pending_view = {"selected_expnum": session.selected_expnum, **session.view}
        return True

    def apply_pending_view(self):
        """After the first fit of an opened session: its exposure and view."""
        if self._pending_view is not None:
            view, self._pending_view = self._pending_view, None
            self._apply_view(view)

    def _apply_view(self, view: dict):
        """A validated view (`smp_gui.session.parse_session`)."""
        w = self.window
        expnum = view.get("selected_expnum")
        if expnum is not None and w.result is not None:
            expnums = [ex.entry.expnum for ex in w.result.fit.scene.exposures]
            if expnum in expnums:
                w.browser.select(expnums.index(expnum))
        pv = w.panels_view
        for key, apply in (("colormap", pv.set_colormap), ("stretch", pv.set_stretch)):
            if view.get(key):
                apply(view[key])
        for key, apply in (("invert", pv.set_inverted), ("show_mask", pv.set_show_mask)):
            if view.get(key) is not None:
                apply(view[key])
        if view.get("levels"):
            pv.set_levels(*view["levels"])
        # Sessions saved before the sky-aligned display have none: their range is in
        # stamp coordinates, so they are shown as saved, not sky-aligned.
        w.set_sky_aligned(bool(view.get("sky_aligned", False)))
        if view.get("range"):
            pv.set_view_range(view["range"])
