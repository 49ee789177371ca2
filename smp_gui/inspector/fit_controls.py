"""Fit settings and actions: mode, scene grid, sky, convention, PSF normalisation, target
offsets, source shot noise, position search, chi2 map, cancel.

Offsets are px relative to the target's WCS position in the detection exposure, in the
convention's frame: single ``(dx, dy)``, binary ``(dx1, dx2, dy1, dy2)`` (the published
order).
"""
from __future__ import annotations

from PyQt6.QtCore import Qt, pyqtSignal
from PyQt6.QtWidgets import (QCheckBox, QComboBox, QDoubleSpinBox, QFormLayout, QFrame,
                             QGroupBox, QHBoxLayout, QLabel, QPushButton, QScrollArea,
                             QSpinBox, QVBoxLayout, QWidget)

from smp_model.conventions import PSF_NORMALIZATIONS, get_convention
from smp_model.settings import FitSettings

__all__ = ["CONVENTIONS", "DEFAULT_GAIN", "MAX_GRID_SIZE", "MODES", "OPTIMIZE_TEXT",
           "FitControls", "scrollable"]

MODES = ("single", "binary")
CONVENTIONS = ("exact", "legacy")
# The grid size is not capped at what fits in memory: the engine refuses a grid that would
# not fit (ResourceLimitError, with its estimate) before allocating, and the window says so.
MAX_GRID_SIZE = 5000
DEFAULT_GAIN = 4.0     # e-/ADU, typical of DECam; used when the manifest gives none
OPTIMIZE_TEXT = {"single": "Optimize position", "binary": "Optimize positions"}


def scrollable(widget: QWidget) -> QScrollArea:
    """``widget`` in a vertical scroll area as wide as the widget needs (never clipped
    sideways): a short window scrolls the fit controls instead of squashing them."""
    area = QScrollArea()
    area.setWidget(widget)
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.Shape.NoFrame)
    area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    scrollbar = area.verticalScrollBar().sizeHint().width()
    area.setMinimumWidth(widget.minimumSizeHint().width() + scrollbar)
    return area


def _label(text: str, tip: str) -> QLabel:
    """A short row label; what it means in full is its tooltip."""
    label = QLabel(text)
    label.setToolTip(tip)
    return label


def _narrow_form(parent=None) -> QFormLayout:
    """A form whose field goes under its label when the two do not fit side by side: the
    dock can be as narrow as its widest label or field, not their sum."""
    form = QFormLayout(parent)
    form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
    form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
    form.setHorizontalSpacing(6)
    return form


def _pair(first: QWidget, second: QWidget) -> QWidget:
    row = QWidget()
    layout = QHBoxLayout(row)
    layout.setContentsMargins(0, 0, 0, 0)
    layout.setSpacing(4)
    layout.addWidget(first)
    layout.addWidget(second)
    return row


def _offset_box(value: float = 0.0) -> QDoubleSpinBox:
    box = QDoubleSpinBox()
    box.setRange(-20.0, 20.0)
    box.setDecimals(3)
    box.setSingleStep(0.1)
    # no " px" suffix: the row's label says px, and two boxes then fit a narrow dock
    box.setKeyboardTracking(False)
    box.setValue(value)
    return box


class FitControls(QWidget):
    """Signals: settingsChanged() (grid/sky/convention/PSF normalisation: a new scene
    model), modeChanged(str),
    offsetsEdited(tuple) (typed offsets of the current mode), optimizeRequested(),
    cancelRequested(), chi2MapRequested(half_width, step, reoptimize_primary),
    shotNoiseChanged() (the shot-noise option or its gain/iterations)."""

    settingsChanged = pyqtSignal()
    modeChanged = pyqtSignal(str)
    offsetsEdited = pyqtSignal(tuple)
    optimizeRequested = pyqtSignal()
    cancelRequested = pyqtSignal()
    chi2MapRequested = pyqtSignal(float, float, bool)
    shotNoiseChanged = pyqtSignal()

    def __init__(self, parent=None):
        super().__init__(parent)
        defaults = FitSettings()
        self.mode_box = QComboBox()
        self.mode_box.addItems(MODES)
        self.grid_size = QSpinBox()
        self.grid_size.setRange(1, MAX_GRID_SIZE)
        self.grid_size.setValue(defaults.grid_size)
        self.grid_size.setKeyboardTracking(False)
        self.grid_step = QDoubleSpinBox()
        self.grid_step.setRange(0.05, 5.0)
        self.grid_step.setDecimals(3)
        self.grid_step.setSingleStep(0.05)
        self.grid_step.setSuffix(" arcsec")
        self.grid_step.setValue(defaults.grid_step_arcsec)
        self.grid_step.setKeyboardTracking(False)
        self.fit_sky = QCheckBox("per exposure")
        self.fit_sky.setToolTip("fit one sky level per exposure")
        self.fit_sky.setChecked(defaults.fit_sky)
        self.convention = QComboBox()
        self.convention.addItems(CONVENTIONS)
        self.psf_normalization = QComboBox()
        self.psf_normalization.addItems(PSF_NORMALIZATIONS)
        self.psf_normalization.setCurrentText(defaults.psf_normalization)
        self.psf_normalization.setToolTip(
            "How PSF stamps are rendered (docs: validation/psf_phase). band-limited: without the "
            "frequencies the pixels alias, so a Piff model's flux does not depend on the "
            "target's sub-pixel position (exact's default); model: as the PSF model draws "
            "them (legacy's default, as published). A convention change selects its default.")

        self.single_dx, self.single_dy = _offset_box(), _offset_box()
        self.binary_boxes = {name: _offset_box() for name in ("dx1", "dx2", "dy1", "dy2")}
        self.binary_boxes["dx2"].setValue(1.0)
        self.binary_boxes["dy2"].setValue(1.0)

        form = _narrow_form()
        form.addRow(_label("Mode", "single target or binary (two point sources)"),
                    self.mode_box)
        form.addRow(_label("Grid size", "scene grid: nodes per side"), self.grid_size)
        form.addRow(_label("Grid step", "scene grid: spacing of its nodes"), self.grid_step)
        form.addRow(_label("Sky", self.fit_sky.toolTip()), self.fit_sky)
        form.addRow(_label("Convention", "exact (this code's) or legacy (as published): "
                           "the frame of the offsets and the PSF normalisation"),
                    self.convention)
        form.addRow(_label("PSF norm.", self.psf_normalization.toolTip()),
                    self.psf_normalization)
        self.single_row = _pair(self.single_dx, self.single_dy)
        form.addRow(_label("dx, dy px", "target offsets from its WCS position (px)"),
                    self.single_row)
        # the binary's rows are rows of the form itself (they wrap with the others)
        self.binary_rows = (_pair(self.binary_boxes["dx1"], self.binary_boxes["dy1"]),
                            _pair(self.binary_boxes["dx2"], self.binary_boxes["dy2"]))
        for n, pair in enumerate(self.binary_rows, 1):
            form.addRow(_label(f"{n}: dx, dy px", f"offsets of component {n} from the "
                               "target's WCS position (px)"), pair)

        self.shot_noise = QCheckBox("target Poisson")
        self.shot_noise.setToolTip(
            "Add the target's Poisson noise: refit with the model's own Poisson variance "
            "(model / gain) added to the detection stamp's variance, as published (FLUX_SN, "
            "FLUX_ERR_SN); the flux table then shows both")
        self.gain = QDoubleSpinBox()
        self.gain.setRange(0.01, 1000.0)
        self.gain.setDecimals(3)
        self.gain.setSingleStep(0.1)
        self.gain.setSuffix(" e⁻/ADU")
        self.gain.setValue(DEFAULT_GAIN)
        self.gain.setKeyboardTracking(False)
        self.gain.setToolTip("gain of the detection stamp (electrons per SCI unit)")
        self.sn_iterations = QComboBox()
        self.sn_iterations.addItem("once", 1)
        self.sn_iterations.addItem("to convergence", 0)
        self.sn_iterations.setToolTip("refit once with the first model's variance (as "
                                      "published), or until the fluxes settle")
        form.addRow(_label("Shot noise", self.shot_noise.toolTip()), self.shot_noise)
        form.addRow(_label("Gain", self.gain.toolTip()), self.gain)
        form.addRow(_label("Refit", self.sn_iterations.toolTip()), self.sn_iterations)
        self._update_shot_noise_enabled()

        self.optimize_button = QPushButton(OPTIMIZE_TEXT["single"])
        self.optimize_button.setToolTip("Search the position(s) from the markers (Powell)")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.setMinimumWidth(56)   # not the style's 80 px: a narrower dock
        buttons = QHBoxLayout()
        buttons.addWidget(self.optimize_button, 1)
        buttons.addWidget(self.cancel_button)

        self.map_group = QGroupBox("Δχ² map (secondary)")
        self.map_group.setToolTip("Δχ² of the binary over a grid of the secondary's "
                                  "offsets, around its marker")
        self.map_half_width = QDoubleSpinBox()
        self.map_half_width.setRange(0.2, 10.0)
        self.map_half_width.setValue(2.0)
        self.map_half_width.setSuffix(" px")
        self.map_step = QDoubleSpinBox()
        self.map_step.setRange(0.02, 2.0)
        self.map_step.setDecimals(2)
        self.map_step.setSingleStep(0.05)
        self.map_step.setValue(0.2)
        self.map_step.setSuffix(" px")
        self.map_primary = QComboBox()
        self.map_primary.addItems(["held", "re-optimised"])
        self.map_primary.setToolTip("the primary held where it is, or re-optimised at "
                                    "every cell (slower)")
        self.map_button = QPushButton("Compute Δχ² map")
        mform = _narrow_form(self.map_group)
        mform.addRow(_label("Half width", "the map spans the secondary ± this"),
                     self.map_half_width)
        mform.addRow(_label("Step", "spacing of the map's cells"), self.map_step)
        mform.addRow(_label("Primary", self.map_primary.toolTip()), self.map_primary)
        mform.addRow(self.map_button)

        self.form = form
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.map_group)
        layout.addStretch(1)

        self.mode_box.currentTextChanged.connect(self._on_mode)
        self.mode_box.currentTextChanged.connect(self._show_mode_rows)
        for w in (self.grid_size, self.grid_step):
            w.valueChanged.connect(lambda _: self.settingsChanged.emit())
        self.fit_sky.toggled.connect(lambda _: self.settingsChanged.emit())
        self.shot_noise.toggled.connect(self._update_shot_noise_enabled)
        self.shot_noise.toggled.connect(lambda _: self.shotNoiseChanged.emit())
        self.gain.valueChanged.connect(
            lambda _: self.shot_noise.isChecked() and self.shotNoiseChanged.emit())
        self.sn_iterations.currentIndexChanged.connect(
            lambda _: self.shot_noise.isChecked() and self.shotNoiseChanged.emit())
        self.convention.currentTextChanged.connect(self._on_convention)
        self.psf_normalization.currentTextChanged.connect(
            lambda _: self.settingsChanged.emit())
        for w in (self.single_dx, self.single_dy, *self.binary_boxes.values()):
            w.valueChanged.connect(lambda _: self.offsetsEdited.emit(self.offsets()))
        self.optimize_button.clicked.connect(self.optimizeRequested)
        self.cancel_button.clicked.connect(self.cancelRequested)
        self.map_button.clicked.connect(
            lambda: self.chi2MapRequested.emit(self.map_half_width.value(),
                                               self.map_step.value(),
                                               self.map_primary.currentIndex() == 1))
        self._show_mode_rows(self.mode)

    # -- state --------------------------------------------------------------------------

    @property
    def mode(self) -> str:
        return self.mode_box.currentText()

    def set_mode(self, mode: str):
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}")
        self.mode_box.setCurrentText(mode)

    def settings(self) -> FitSettings:
        return FitSettings(grid_size=self.grid_size.value(),
                           grid_step_arcsec=self.grid_step.value(),
                           fit_sky=self.fit_sky.isChecked(),
                           convention=self.convention.currentText(),
                           psf_normalization=self.psf_normalization.currentText())

    def set_settings(self, settings: FitSettings):
        """Show ``settings`` without emitting settingsChanged."""
        widgets = (self.grid_size, self.grid_step, self.fit_sky, self.convention,
                   self.psf_normalization)
        for w in widgets:
            w.blockSignals(True)
        try:
            self.grid_size.setValue(settings.grid_size)
            self.grid_step.setValue(settings.grid_step_arcsec)
            self.fit_sky.setChecked(settings.fit_sky)
            self.convention.setCurrentText(settings.convention)
            self.psf_normalization.setCurrentText(settings.psf_normalization)
        finally:
            for w in widgets:
                w.blockSignals(False)

    def _on_convention(self, name: str):
        """A convention comes with its own PSF normalisation (one settings change)."""
        self.psf_normalization.blockSignals(True)
        self.psf_normalization.setCurrentText(get_convention(name).psf_normalization)
        self.psf_normalization.blockSignals(False)
        self.settingsChanged.emit()

    def offsets(self, mode: str | None = None) -> tuple[float, ...]:
        if (mode or self.mode) == "single":
            return (self.single_dx.value(), self.single_dy.value())
        return tuple(self.binary_boxes[n].value() for n in ("dx1", "dx2", "dy1", "dy2"))

    def set_offsets(self, offsets, mode: str | None = None):
        """Show ``offsets`` of ``mode`` (default the current one) without signals."""
        mode = mode or self.mode
        boxes = ((self.single_dx, self.single_dy) if mode == "single" else
                 tuple(self.binary_boxes[n] for n in ("dx1", "dx2", "dy1", "dy2")))
        for box, value in zip(boxes, offsets):
            box.blockSignals(True)
            box.setValue(float(value))
            box.blockSignals(False)

    def shot_noise_options(self) -> tuple[float, int] | None:
        """(gain, iterations) when the shot-noise refit is on, else None."""
        if not self.shot_noise.isChecked():
            return None
        return float(self.gain.value()), int(self.sn_iterations.currentData())

    def set_shot_noise(self, enabled: bool, gain: float | None = None,
                       iterations: int | None = None):
        """Show the shot-noise option without emitting shotNoiseChanged."""
        widgets = (self.shot_noise, self.gain, self.sn_iterations)
        for w in widgets:
            w.blockSignals(True)
        try:
            self.shot_noise.setChecked(bool(enabled))
            if gain is not None:
                self.gain.setValue(float(gain))
            if iterations is not None:
                self.sn_iterations.setCurrentIndex(self.sn_iterations.findData(int(iterations)))
        finally:
            for w in widgets:
                w.blockSignals(False)
        self._update_shot_noise_enabled()

    def show_measurement(self, m, shown=None):
        """Show measurement ``m`` (a `smp_gui.state.Measurement`) without emitting
        signals; ``shown``, the one shown before, limits that to what changed (a drag
        changes one mode's offsets)."""
        self.blockSignals(True)
        try:
            if shown is None or shown.settings != m.settings:
                self.set_settings(m.settings)
            if self.mode != m.mode:
                self.set_mode(m.mode)
            for mode in MODES:
                if shown is None or getattr(shown, mode) != getattr(m, mode):
                    self.set_offsets(getattr(m, mode).published, mode)
            if shown is None or (shown.gain, shown.shot_noise_iterations) != \
                    (m.gain, m.shot_noise_iterations):
                self.set_shot_noise(m.gain is not None, m.gain, m.shot_noise_iterations)
        finally:
            self.blockSignals(False)

    def _update_shot_noise_enabled(self, *_):
        on = self.shot_noise.isChecked()
        self.gain.setEnabled(on)
        self.sn_iterations.setEnabled(on)

    def set_busy(self, busy: bool):
        self.cancel_button.setEnabled(busy)

    def _show_mode_rows(self, mode: str):
        self.form.setRowVisible(self.single_row, mode == "single")
        for pair in self.binary_rows:
            self.form.setRowVisible(pair, mode == "binary")
        self.map_group.setEnabled(mode == "binary")
        self.optimize_button.setText(OPTIMIZE_TEXT.get(mode, OPTIMIZE_TEXT["binary"]))

    def _on_mode(self, mode: str):
        self.modeChanged.emit(mode)
