"""Opening things in the inspector: a detection (a manifest or its folder), a saved
session, or a `smp batch` output (handed to a survey window); the Open dialogs, the
recent files, drag and drop.

A new detection or new settings may fail to fit (bad input, a grid too large):
`Transition` remembers what was shown before, and the window goes back to it when the
first fit of the new state fails.  Only detections that fitted enter the recent files.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from PyQt6.QtWidgets import QFileDialog

from smp_model.errors import ManifestError, SMPError
from smp_model.fit.request import TargetOffsets
from smp_model.inputs.manifest import DetectionManifest
from smp_model.settings import FitSettings

from .. import dialogs
from ..consent import ask_psf_consent
from ..controller import FitJob
from ..session import SESSION_SUFFIX
from ..state import Measurement

__all__ = ["BATCH_SUFFIXES", "MANIFEST_NAME", "MAX_RECENT", "DetectionOpener", "Transition",
           "resolve_detection_path"]

MANIFEST_NAME = "detection.toml"
MAX_RECENT = 8
BATCH_SUFFIXES = dialogs.TABLE_SUFFIXES   # what `smp batch` writes: the survey view
_OPEN_FILTER = (f"Detections and sessions (*.toml *.json);;Detection manifests (*.toml);;"
                f"Batch outputs: survey view ({dialogs.TABLE_FILTER});;"
                f"Sessions (*{SESSION_SUFFIX} *.json);;All files (*)")


def resolve_detection_path(path: str | Path) -> Path:
    """The manifest of a detection.

    Parameters
    ----------
    path : str or Path
        A manifest, or a folder holding ``detection.toml``.

    Returns
    -------
    Path
        The manifest's absolute path.

    Raises
    ------
    smp_model.errors.ManifestError
        When there is no such file, or no manifest in the folder.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        candidate = path / MANIFEST_NAME
        if not candidate.is_file():
            raise ManifestError(f"no {MANIFEST_NAME} in this folder", path)
        return candidate.resolve()
    if not path.exists():
        raise ManifestError("file not found", path)
    return path.resolve()


class Transition:
    """A change of detection or settings whose first fit may fail.

    `begin` remembers what the window shows (once per transition), `wait_for` names the
    fit that decides, and `end`, called with every result and failure, puts the
    remembered state back when that fit failed.
    """

    def __init__(self, window):
        self.window = window
        self.request_id = 0        # the deciding fit (0: nothing in transition)
        self._fallback: dict | None = None

    def begin(self):
        """Remember what is shown, unless a transition is under way already (then what
        was shown before it is kept)."""
        if self.request_id:
            return
        w = self.window
        self._fallback = {
            "detection": w.model.detection, "manifest": w.manifest,
            "measurement": w.model.measurement,
            "displayed": (w.model.displayed_request, w.model.displayed_offsets),
            "selected_index": w.selected_index, "title": w.windowTitle(),
        }

    def wait_for(self, request_id: int | None, replace: bool = True):
        """Make fit ``request_id`` the one that decides (``replace`` False: only when
        none does yet)."""
        if replace or not self.request_id:
            self.request_id = request_id or 0

    def end(self, request_id: int, failed: bool) -> bool:
        """Called with every result or failure; True if the state was restored."""
        if not self.request_id or request_id < self.request_id:
            return False
        fallback, self._fallback, self.request_id = self._fallback, None, 0
        if not failed or fallback is None:
            return False
        w = self.window
        w.manifest = fallback["manifest"]
        w.model.restore(fallback["detection"], fallback["measurement"],
                        *fallback["displayed"])
        w.selected_index = fallback["selected_index"]
        w.setWindowTitle(fallback["title"])
        w.place_markers()
        return True


class DetectionOpener:
    """What File > Open, the recent files and a drop do in ``window``.

    Parameters
    ----------
    window : InspectorWindow
    survey_factory : callable, optional
        ``survey_factory(window)`` returns a new survey window that browses in
        ``window`` (`smp_gui.windows.WindowManager` gives one); None: batch outputs
        cannot be opened here.
    """

    def __init__(self, window, survey_factory=None):
        self.window = window
        self.transition = Transition(window)
        self.opening = False        # model.open in progress: one fit, requested after
        self._survey_factory = survey_factory
        self._recent_pending: Path | None = None   # into Recent once it has fitted
        self.mode_note = ""    # said with the first fit of a detection opened single

    def open_path(self, path: str | Path, ask_consent: bool = True) -> bool:
        """Open a manifest, a folder holding detection.toml, a saved session or a batch
        output; False when it could not be opened (the error is shown) or the user did
        not consent to its PSF files (``ask_consent``: `consent_to_psf_files`)."""
        path = Path(path)
        if path.name.endswith(".json"):
            return self.window.session_files.open(path, ask_consent)
        if path.suffix.lower() in BATCH_SUFFIXES:
            return self.open_survey(path)
        return self.open_detection(path, ask_consent=ask_consent)

    def open_survey(self, path: str | Path) -> bool:
        """Show a batch output in a new survey window that browses in this one."""
        w = self.window
        if self._survey_factory is None:
            w.show_error("Cannot open batch output",
                         SMPError("this window has no survey view"), context=str(path))
            return False
        survey = self._survey_factory(w)
        if not survey.open_survey(path):
            w.error_dialog = survey.error_dialog
            w.errorShown.emit(survey.error_dialog)
            return False
        survey.show()
        w.survey_window = survey
        return True

    def open_detection(self, path: str | Path, settings: FitSettings | None = None,
                       mode: str | None = None, offsets=None, keep_gain: bool = False,
                       measurement: Measurement | None = None, ask_consent: bool = False,
                       search: bool = False) -> bool:
        """Read the manifest (errors: a dialog, nothing changes) and start the cold fit;
        the parameters are those of `InspectorWindow.open_detection`.  ``ask_consent``
        (what the user opens: File > Open, recent files, a drop): PSF files outside the
        manifest's folder are read only once the user says so (`consent_to_psf_files`)."""
        w = self.window
        try:
            manifest_path = resolve_detection_path(path)
            manifest = DetectionManifest.read(manifest_path)
        except (SMPError, OSError, ValueError) as exc:
            w.show_error("Cannot open detection", exc, context=str(path))
            return False
        if ask_consent and not self.consent_to_psf_files(
                manifest_path, manifest.psf_files_outside(manifest_path.parent)):
            return False
        self.mode_note = ""
        if mode is None and offsets is not None:
            mode = "binary" if len(offsets) == 4 else "single"
        if measurement is None:
            if mode is None and w.model.mode != "single":
                # a new detection starts single (a manifest says nothing of binarity):
                # the binary fit of the one before is no guess about this one
                self.mode_note = (f"single mode: the previous detection was fitted as "
                                  f"{w.model.mode} (Mode in the Fit panel switches)")
            measurement = self._measurement(settings, mode or "single", offsets)
        measurement = self._with_manifest_gain(measurement, manifest, keep_gain)
        self.transition.begin()
        w.manifest = manifest
        self.opening = True
        try:
            w.model.open(manifest_path, measurement)
        finally:
            self.opening = False
        w.selected_index = None
        w.setWindowTitle(f"SMP Inspector — {manifest.name} ({manifest_path})")
        self._recent_pending = manifest_path
        self.transition.wait_for(w.request_fit())
        if search:
            self.transition.wait_for(w.controller.submit(FitJob(
                str(manifest_path), measurement.request(optimize=True))))
        return True

    def consent_to_psf_files(self, source: Path, psf_files: list[Path]) -> bool:
        """Ask (modally, `smp_gui.consent.ask_psf_consent`) before ``psf_files``, named by
        ``source`` and outside its folder, are read; False: nothing is read or fitted."""
        if not psf_files:
            return True
        w = self.window
        if ask_psf_consent(w, source, psf_files, w.store):
            w.statusBar().showMessage(f"reading {len(psf_files)} PSF file(s) outside "
                                      f"{source.parent}", 10000)
            return True
        w.statusBar().showMessage(f"not opened: {source} (no PSF file was read)", 10000)
        return False

    def _measurement(self, settings, mode, offsets) -> Measurement:
        """The defaults of ``settings`` (else the current ones) and ``mode``, the current
        shot noise, and ``offsets`` (published order) when given."""
        current = self.window.model.measurement
        measurement = Measurement.defaults(
            settings or current.settings, mode, gain=current.gain,
            shot_noise_iterations=current.shot_noise_iterations)
        if offsets is not None:
            measurement = measurement.with_offsets(TargetOffsets.from_published(offsets))
        return measurement

    def _with_manifest_gain(self, measurement: Measurement, manifest: DetectionManifest,
                            keep_gain: bool) -> Measurement:
        """The shot-noise gain becomes the manifest's (detection exposure) unless
        ``keep_gain`` or the manifest has none; the Fit panel shows it."""
        gain = manifest.detection_exposure.gain
        if gain is None or gain <= 0 or keep_gain:
            return measurement
        box = self.window.fit_controls.gain
        box.blockSignals(True)
        box.setValue(gain)
        box.blockSignals(False)
        if measurement.gain is None:
            return measurement
        return dataclasses.replace(measurement, gain=float(gain))

    # -- dialogs ------------------------------------------------------------------------

    def open_dialog(self):
        """File > Open, after saying in the status bar that PSF files run code."""
        w = self.window
        w.statusBar().showMessage("Opening a detection reads its Piff PSF files, which run "
                                  "code: open only data you trust (Help > Data safety)",
                                  10000)
        path, _ = QFileDialog.getOpenFileName(w, "Open detection or session",
                                              str(self._last_dir()), _OPEN_FILTER)
        if path:
            self.open_path(path)

    def open_folder_dialog(self):
        """File > Open folder: a folder holding detection.toml."""
        path = QFileDialog.getExistingDirectory(self.window, "Open detection folder",
                                                str(self._last_dir()))
        if path:
            self.open_detection(path, ask_consent=True)

    def _last_dir(self) -> Path:
        """Where Open starts: the open detection's folder, else the working folder."""
        detection = self.window.manifest_path
        return detection.parent if detection else Path.cwd()

    # -- recent files ---------------------------------------------------------------------

    def recent_files(self) -> list[str]:
        """The detections opened last (that fitted), newest first."""
        value = self.window.store.value("recent", [])
        if isinstance(value, str):
            value = [value]
        return [str(v) for v in (value or [])]

    def fitted(self, request_id: int):
        """Fit ``request_id`` is shown: a transition it decides is over, and the detection
        it opened, if any, enters the recent files."""
        self.transition.end(request_id, failed=False)
        if self._recent_pending is not None:
            self._add_recent(self._recent_pending)
            self._recent_pending = None

    def failed(self, request_id: int):
        """Fit ``request_id`` failed: when it was the first of a new detection or new
        settings, what was shown before comes back (and the detection does not enter the
        recent files)."""
        if self.transition.end(request_id, failed=True):
            self._recent_pending = None

    def _add_recent(self, path: Path):
        recent = [str(path)] + [p for p in self.recent_files() if p != str(path)]
        self.window.store.setValue("recent", recent[:MAX_RECENT])
        self.refresh_recent_menu()

    def refresh_recent_menu(self):
        """File > Open recent lists `recent_files` (disabled when there are none)."""
        menu = self.window.menus.recent_menu
        menu.clear()
        recent = self.recent_files()
        for path in recent:
            action = menu.addAction(path)
            action.triggered.connect(lambda _=False, p=path: self.open_path(p))
        menu.setEnabled(bool(recent))

    # -- drag and drop ------------------------------------------------------------------

    def accept_drag(self, event):
        """A drag that carries one local file is accepted."""
        if dialogs.dropped_local_file(event):
            event.acceptProposedAction()

    def drop(self, event):
        """A dropped local file is opened as File > Open would."""
        path = dialogs.dropped_local_file(event)
        if path:
            event.acceptProposedAction()
            self.open_path(path)
