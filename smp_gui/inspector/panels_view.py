"""The five panels of one exposure (docs/method.rst, "The five panels") side by side
(3 + 2 or fewer columns when the window is tall: `panel_items.best_columns`; a sixth
cell for the Δχ² map), with one set of levels, linked pan/zoom, stretch presets, colour
maps, masked-pixel overlay and a cursor readout.

Stamp coordinates ``(u, v)`` are stamp array coordinates with pixel centres at integers,
x to the right and y up (the convention and its conversions:
`smp_gui.inspector.coordinates`).

What a panel draws of one exposure (images, mask overlay, regions) lies in stamp
coordinates under one item per panel (``contents``) whose transform, `stamp_transform`,
maps them to the view boxes' coordinates.  By default it is the identity: the view
coordinates ARE stamp coordinates.  Sky-aligned (`PanelsView.set_sky_aligned`) it is the
exposure's `smp_model.outputs.display.sky_aligned_affine`: view coordinates are arcsec from the
target's sky position, north up and east left, the same for every exposure, so stepping
through the exposures keeps the sky in place.  Only the cursor readout, the zoom, the
compass, the markers (`smp_gui.inspector.markers`) and `view_to_scene` /
`scene_to_stamp` (tests) map between the two.

The panels display arrays computed by the engine (`smp_model.fit.panels.five_panels`); the
only arithmetic here is choosing display levels.
"""
from __future__ import annotations

import math

import pyqtgraph as pg
from PyQt6.QtCore import QEvent, QPointF, QRectF, QSignalBlocker, Qt, pyqtSignal
from PyQt6.QtGui import QFontDatabase, QPolygonF, QTransform
from PyQt6.QtWidgets import (QCheckBox, QComboBox, QFrame, QHBoxLayout, QLabel, QSizePolicy,
                             QVBoxLayout, QWidget)

from smp_model.fit.panels import PANEL_KEYS, PANEL_TITLES, ExposurePanels
from smp_model.outputs.display import (COLORMAPS, STRETCHES, DisplayStyle, Overlays,
                                       mask_overlay, overlay_colors, stretch_levels)

from .coordinates import EMPTY_READOUT, affine_transform, pixel_rect, readout_text
from .panel_items import (PanelViewBox, best_columns, cache_as_pixmap, cursor_scene_pos,
                          make_colormap, set_title, set_titles, show_image)
from .sky_overlays import OverlayItems

__all__ = ["CONTRAST_PER_PANEL", "PanelsView"]

# Contrast/bias by right-drag (DS9): a drag across the whole panel moves the level
# window by its width (bias) or scales it by e^±1 (contrast).
CONTRAST_PER_PANEL = 1.0
_HISTOGRAM_WIDTH = 110   # px, levels control beside the panels
_TITLE_HEIGHT = 22       # px, a panel's title row


class PanelsView(QWidget):
    """Five linked image panels plus levels control and readout.

    Signals
    -------
    cursorMoved(str) : the readout text for the pixel under the cursor.
    stretchChanged(str), styleChanged() : what the panels draw changed.
    frameChanged() : `stamp_transform` changed (sky-aligned toggled, another exposure).
    """

    cursorMoved = pyqtSignal(str)
    stretchChanged = pyqtSignal(str)
    styleChanged = pyqtSignal()
    frameChanged = pyqtSignal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.panels: ExposurePanels | None = None
        self.pixel_to_sky = None      # callable(x, y) -> (ra, dec) of the shown exposure
        self.stretch = "published"
        self.colormap_name = "gray_r"
        self.inverted, self.show_mask, self.crosshair = False, True, False
        self.show_regions = self.show_compass = True
        self.sky_aligned = False
        # stamp -> view coordinates of the shown exposure (see the module docstring), and
        # the view rectangle that holds every exposure's stamp sky-aligned (None: the
        # shown exposure's)
        self.stamp_transform = QTransform()
        self.sky_extent: QRectF | None = None
        # The whole stamp until the user pans or zooms; then their view (`user_view`, or a
        # session's) stays through resizes (pyqtgraph would recentre it) until reset.
        self.fit_view, self.user_view = True, None
        self._levels_for = None       # (expnum, stretch) the levels were chosen for
        self._blink_model = False
        self._readout_at: tuple[float, float] | None = None   # stamp point read out
        self._build_graphics()
        self._build_controls()

    def _build_graphics(self):
        self.graphics = pg.GraphicsLayoutWidget()
        self.graphics.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        # A visible focus frame: the arrow keys nudge markers only while it is shown.
        self.graphics.setFrameShape(QFrame.Shape.Box)
        self.graphics.setLineWidth(2)
        self.graphics.setStyleSheet("QGraphicsView { border: 2px solid transparent; }"
                                    "QGraphicsView:focus { border: 2px solid #3a8ee6; }")
        self.graphics.ci.setSpacing(2)
        self.plots: dict[str, pg.PlotItem] = {}
        self.images: dict[str, pg.ImageItem] = {}
        self.masks: dict[str, pg.ImageItem] = {}
        self.contents: dict[str, pg.ItemGroup] = {}
        self.crosshairs = []
        for col, key in enumerate(PANEL_KEYS):
            self._add_panel(col, key)
        self.overlay_items = OverlayItems(self.contents.values(), self.plots["image"])
        self.overlays: Overlays | None = None
        self.histogram = pg.HistogramLUTItem(image=self.images["image"])
        self.histogram.gradient.showTicks(False)
        self.graphics.addItem(self.histogram, row=0, col=len(PANEL_KEYS))
        self.columns = len(PANEL_KEYS)
        self._extra: list[pg.PlotItem] = []     # the Δχ² map's plot, when it is shown
        self.graphics.installEventFilter(self)
        # Refit the stamp to its panel after the layout has settled on a new size (the
        # widget's resize event comes before the view boxes have their new geometry).
        self.plots["image"].getViewBox().sigResized.connect(self._on_view_resized)
        self.histogram.sigLevelsChanged.connect(self._sync_levels)
        self.histogram.sigLookupTableChanged.connect(self._sync_lut)
        self.graphics.scene().sigMouseMoved.connect(self._on_mouse_moved)

    def _add_panel(self, col: int, key: str):
        """Panel ``key`` in column ``col``: its view box, image, mask and crosshair."""
        viewbox = PanelViewBox()
        viewbox.levelsDragged.connect(self.drag_levels)
        viewbox.sigRangeChangedManually.connect(self._keep_user_view)
        viewbox.resetZoomRequested.connect(self.reset_zoom)
        plot = self.graphics.addPlot(row=0, col=col, title=PANEL_TITLES[key],
                                     viewBox=viewbox)
        plot.setAspectLocked(True)
        plot.hideButtons()
        plot.setMenuEnabled(False)
        for axis in ("left", "bottom"):
            plot.hideAxis(axis)
        set_title(plot, PANEL_TITLES[key])
        plot.setMinimumWidth(60)
        self.graphics.ci.layout.setColumnStretchFactor(col, 1)
        # The exposure's content, in stamp coordinates (transformed when sky-aligned);
        # the zoom is set explicitly (`reset_zoom`), not from the items' bounds.
        contents = pg.ItemGroup()
        plot.addItem(contents, ignoreBounds=True)
        image, mask = (pg.ImageItem(axisOrder="row-major") for _ in range(2))
        mask.setZValue(5)
        cache_as_pixmap(mask)
        if key == "image":   # the data: fixed for an exposure
            cache_as_pixmap(image)
        contents.addItem(image)
        contents.addItem(mask)
        for angle in (0, 90):
            line = pg.InfiniteLine(angle=angle, movable=False,
                                   pen=pg.mkPen((255, 255, 0, 160), width=1))
            line.setZValue(15)
            line.setVisible(False)
            plot.addItem(line, ignoreBounds=True)
            self.crosshairs.append(line)
        if self.plots:     # one pan/zoom for all: linked to the first panel
            first = next(iter(self.plots.values()))
            plot.setXLink(first)
            plot.setYLink(first)
        self.plots[key] = plot
        self.contents[key] = contents
        self.images[key] = image
        self.masks[key] = mask

    def _build_controls(self):
        """The bar above the panels (stretch, colour map, invert, mask) and the readout
        below them."""
        self.stretch_box = QComboBox()
        for key, label in STRETCHES.items():
            self.stretch_box.addItem(label, key)
        self.stretch_box.currentIndexChanged.connect(
            lambda _: self.set_stretch(self.stretch_box.currentData()))
        self.cmap_box = QComboBox()
        self.cmap_box.addItems(COLORMAPS)
        self.cmap_box.currentTextChanged.connect(self.set_colormap)
        self.invert_box = QCheckBox("invert")
        self.invert_box.toggled.connect(self.set_inverted)
        self.mask_box = QCheckBox("", checked=True)
        self.mask_box.toggled.connect(self.set_show_mask)
        self.mask_label = QLabel("<span style='color:#d22'>■</span> unused pixels",
                                 toolTip="Masked pixels and pixels the fit does not use")
        # The bar must not set the window's minimum width (1280 px screens): the combos
        # shrink to a few characters and the mask legend is cut first.
        for box, chars in ((self.stretch_box, 12), (self.cmap_box, 7)):
            box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy
                                    .AdjustToMinimumContentsLengthWithIcon)
            box.setMinimumContentsLength(chars)
        self.mask_label.setSizePolicy(QSizePolicy.Policy.Ignored,
                                      QSizePolicy.Policy.Preferred)
        self.mask_label.setMinimumWidth(20)
        # As many short lines as EMPTY_READOUT has, each fitting a 1280 px wide window.
        self.readout = QLabel(EMPTY_READOUT)
        self.readout.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.readout.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.readout.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.readout.setFixedHeight(self.readout.sizeHint().height() + 4)

        bar = QHBoxLayout()
        bar.addWidget(QLabel("Stretch:"))
        bar.addWidget(self.stretch_box)
        bar.addWidget(QLabel("Colour map:"))
        bar.addWidget(self.cmap_box)
        bar.addWidget(self.invert_box)
        bar.addWidget(self.mask_box)
        bar.addWidget(self.mask_label, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(bar)
        layout.addWidget(self.graphics, 1)
        layout.addWidget(self.readout)
        self._apply_colormap()

    # -- overlays: regions (target's sky position, scene grid), compass and scale bar ----

    def set_overlays(self, overlays: Overlays | None):
        """Draw where the sky lies on the shown exposure (None: nothing), and place it
        sky-aligned when that is on."""
        if overlays is self.overlays and overlays is not None:
            return    # the same exposure (every refit of a drag): nothing moved
        self.overlays = overlays
        self._apply_frame(keep_view=False)
        if overlays is None or self.panels is None:
            self.overlay_items.hide()
            return
        self.overlay_items.set_regions(overlays)
        self._draw_compass()
        self.set_show_regions(self.show_regions)
        self.set_show_compass(self.show_compass)

    def _draw_compass(self):
        if self.overlays is not None and self.panels is not None:
            stamp = self.stamp_transform.map(QPolygonF(pixel_rect(self.panels["image"].shape)))
            self.overlay_items.draw_compass(self.overlays, self.stamp_transform,
                                            self._fit_rect(), stamp)

    # -- sky-aligned display ------------------------------------------------------------

    def set_sky_aligned(self, on: bool):
        """Draw every exposure north up, east left at one angular scale (see the module
        docstring), or in stamp coordinates.  The part of the sky in view stays."""
        self.sky_aligned = bool(on)
        self._apply_frame(keep_view=True)
        self.styleChanged.emit()

    def set_sky_extent(self, extent: tuple[float, float, float, float] | None):
        """(x0, x1, y0, y1) of the view that holds every exposure's stamp sky-aligned
        (`smp_model.outputs.display.stamp_extent`; None: the shown exposure's): the whole-stamp
        zoom is then the same for every exposure."""
        rect = None if extent is None else \
            QRectF(extent[0], extent[2], extent[1] - extent[0], extent[3] - extent[2])
        if rect == self.sky_extent:
            return     # the same detection (every refit of a drag)
        self.sky_extent = rect
        self._draw_compass()
        if self.fit_view and self.panels is not None:
            self.reset_zoom()

    @property
    def is_sky_frame(self) -> bool:
        """Whether the panels are drawn sky-aligned now (on, and the exposure has a WCS
        that inverts)."""
        return self.sky_aligned and self.overlays is not None

    def _apply_frame(self, keep_view: bool):
        """Set `stamp_transform` for the shown exposure.  ``keep_view``: the stamp point
        at the centre of the view stays there, at the same on-screen scale (toggling);
        otherwise the view stays (stepping through exposures keeps the sky in place)."""
        new = (affine_transform(self.overlays.sky_affine) if self.is_sky_frame
               else QTransform())
        old = self.stamp_transform
        if new == old:
            return
        vb = self.plots["image"].getViewBox()
        (x0, x1), (y0, y1) = vb.viewRange()
        self.stamp_transform = new
        for contents in self.contents.values():
            contents.setTransform(new)
            for child in contents.childItems():     # pixel-sized symbols, cached bounds
                if hasattr(child, "viewTransformChanged"):
                    child.viewTransformChanged()
        self._draw_compass()
        self.frameChanged.emit()
        if self.panels is None:
            return
        self._arrange()   # the best grid depends on the shape of the stamp as drawn
        if self.fit_view:
            self.reset_zoom()
        elif keep_view:
            inverse, _ = old.inverted()
            centre = new.map(inverse.map(QPointF(0.5 * (x0 + x1), 0.5 * (y0 + y1))))
            scale = math.sqrt(abs(new.determinant()) / abs(old.determinant()))
            hw, hh = 0.5 * scale * (x1 - x0), 0.5 * scale * (y1 - y0)
            vb.setRange(xRange=(centre.x() - hw, centre.x() + hw),
                        yRange=(centre.y() - hh, centre.y() + hh), padding=0.0)
            self._keep_user_view()

    def stamp_to_view(self, u: float, v: float) -> tuple[float, float]:
        """View coordinates of stamp point (u, v) on the shown exposure."""
        point = self.stamp_transform.map(QPointF(u, v))
        return point.x(), point.y()

    def stamp_direction(self, dx: float, dy: float) -> tuple[float, float]:
        """Unit vector in stamp coordinates that is drawn pointing along view direction
        (dx, dy) (x right, y up): (dx, dy) itself unless sky-aligned."""
        if self.stamp_transform.isIdentity():
            return float(dx), float(dy)
        inverse, _ = self.stamp_transform.inverted()
        d = inverse.map(QPointF(dx, dy)) - inverse.map(QPointF(0.0, 0.0))
        norm = math.hypot(d.x(), d.y())
        return d.x() / norm, d.y() / norm

    def view_to_stamp(self, x: float, y: float) -> tuple[float, float]:
        """Stamp coordinates of view point (x, y) on the shown exposure."""
        inverse, _ = self.stamp_transform.inverted()
        point = inverse.map(QPointF(x, y))
        return point.x(), point.y()

    def set_show_regions(self, show: bool):
        """The target's sky position (a +) and the scene grid's outline."""
        self.show_regions = bool(show)
        self.overlay_items.show_regions(self.show_regions and self.overlays is not None)

    def set_show_compass(self, show: bool):
        """N/E arrows and a scale bar on the image panel."""
        self.show_compass = bool(show)
        self.overlay_items.show_compass(self.show_compass and self.overlays is not None)

    # -- layout -------------------------------------------------------------------------

    def eventFilter(self, watched, event):
        if watched is self.graphics and event.type() == QEvent.Type.Resize:
            self._arrange()
        return super().eventFilter(watched, event)

    def _arrange(self, force: bool = False):
        """Panels (and the extra plot: the Δχ² map) in the grid of 1 to 6 columns that
        shows them largest in the space there is: side by side in a wide window, 3 + 2
        (3 + 3 with the map) in a tall one."""
        size = self.graphics.size()
        shape = self.panels["image"].shape if self.panels is not None else (1, 1)
        shown = self._fit_rect()
        aspect = shown.width() / shown.height() if shown is not None else shape[1] / shape[0]
        cells = [*(self.plots[key] for key in PANEL_KEYS), *self._extra]
        columns = best_columns(size.width() - _HISTOGRAM_WIDTH, size.height(),
                               len(cells), aspect, _TITLE_HEIGHT)
        if columns == self.columns and not force:
            return
        grid = self.graphics.ci.layout
        rows = math.ceil(len(cells) / columns)
        for item in [*self.plots.values(), self.histogram, *self._extra]:
            grid.removeItem(item)
        for n, item in enumerate(cells):
            grid.addItem(item, n // columns, n % columns)
        grid.addItem(self.histogram, 0, columns, rows, 1)
        for col in range(len(PANEL_KEYS) + 2):
            grid.setColumnStretchFactor(col, 1 if col < columns else 0)
        for row in range(len(PANEL_KEYS) + 1):
            grid.setRowStretchFactor(row, 1 if row < rows else 0)
        self.columns = columns

    def set_extra_plot(self, plot: pg.PlotItem | None):
        """Show ``plot`` in the grid's sixth cell (None: no extra cell)."""
        if self._extra == ([plot] if plot is not None else []):
            return
        for old in self._extra:
            self.graphics.ci.layout.removeItem(old)
            old.setVisible(False)
        self._extra = [plot] if plot is not None else []
        if plot is not None:      # the grid makes it a child of the panels' scene
            plot.setVisible(True)
        self._arrange(force=True)

    # -- content ------------------------------------------------------------------------

    def set_panels(self, panels: ExposurePanels, pixel_to_sky=None):
        """Show ``panels``; levels are chosen again only for a new exposure or stretch."""
        new_exposure = self.panels is None or self.panels.expnum != panels.expnum \
            or self.panels["image"].shape != panels["image"].shape
        # another exposure or detection: a readout of the last point would name the old
        # one's sky position and pixels
        new_source = new_exposure or self.panels.origin != panels.origin
        self.panels = panels
        self.pixel_to_sky = pixel_to_sky
        rect = pixel_rect(panels["image"].shape)
        levels = self.histogram.getLevels()
        overlay = mask_overlay(panels.usable)
        for key in PANEL_KEYS:
            shown = "model" if (key == "image" and self._blink_model) else key
            show_image(self.images[key], panels[shown], rect, levels)
            show_image(self.masks[key], overlay, rect, (0, 255))
            self.masks[key].setVisible(self.show_mask)
        if new_exposure or self._levels_for != (panels.expnum, self.stretch):
            self.reset_levels()
        if new_exposure:
            set_titles(self.plots, panels, self._blink_model)
            self._arrange()   # the best grid depends on the stamp's aspect
            if self.fit_view:
                self.reset_zoom()
        self.refresh_readout(new_source)

    def _on_view_resized(self, *_):
        if self.panels is not None and (self.fit_view or self.user_view is not None):
            self.plots["image"].getViewBox().setRange(
                rect=self._fit_rect() if self.fit_view else self.user_view, padding=0.0)

    def _fit_rect(self) -> QRectF | None:
        """The view rectangle that shows the whole stamp: sky-aligned, the one that
        holds every exposure's (`set_sky_extent`)."""
        if self.panels is None:
            return None
        if self.is_sky_frame and self.sky_extent is not None:
            return QRectF(self.sky_extent)
        return self.stamp_transform.mapRect(pixel_rect(self.panels["image"].shape))

    def reset_zoom(self):
        """Show the whole stamp, and keep doing so across resizes until the user zooms."""
        self.fit_view, self.user_view = True, None
        rect = self._fit_rect()
        if rect is not None:
            self.plots["image"].getViewBox().setRange(rect=rect, padding=0.0)

    def zoom(self, factor: float):
        """Zoom all panels about their centre (factor > 1: closer)."""
        self.plots["image"].getViewBox().scaleBy((1.0 / factor, 1.0 / factor))
        self._keep_user_view()

    def _keep_user_view(self, *_):
        """What is in view now is the user's: resizes keep it (`_on_view_resized`)."""
        self.fit_view, self.user_view = False, self.plots["image"].getViewBox().viewRect()

    def drag_levels(self, dx: float, dy: float):
        """Right-drag: horizontal moves the level window (bias), vertical scales it
        (contrast), as fractions of a panel."""
        lo, hi = self.levels()
        width = hi - lo
        centre = 0.5 * (lo + hi) - dx * width
        width *= math.exp(-dy * CONTRAST_PER_PANEL)
        self.set_levels(centre - 0.5 * width, centre + 0.5 * width)

    def style(self) -> DisplayStyle:
        """What the panels show, for exports (levels: those on screen)."""
        return DisplayStyle(stretch=self.stretch, colormap=self.colormap_name,
                            invert=self.inverted, levels=self.levels(),
                            show_mask=self.show_mask, sky_aligned=self.sky_aligned)

    def reset_levels(self):
        if self.panels is None:
            return
        lo, hi = stretch_levels(self.stretch, self.panels)
        self._levels_for = (self.panels.expnum, self.stretch)
        self.histogram.setHistogramRange(lo - 0.15 * (hi - lo), hi + 0.15 * (hi - lo))
        self.histogram.setLevels(lo, hi)
        self._sync_levels()
        if self.stretch == "histeq":   # its colours depend on the levels
            self._apply_colormap()

    def levels(self) -> tuple[float, float]:
        return tuple(float(v) for v in self.histogram.getLevels())

    def set_levels(self, lo: float, hi: float):
        if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
            raise ValueError(f"levels must be finite with low < high, got {lo}, {hi}")
        self.histogram.setLevels(lo, hi)
        self._sync_levels()
        self.styleChanged.emit()

    def set_stretch(self, stretch: str):
        if stretch not in STRETCHES:
            raise ValueError(f"unknown stretch {stretch!r}")
        self.stretch = stretch
        self.stretch_box.blockSignals(True)
        self.stretch_box.setCurrentIndex(list(STRETCHES).index(stretch))
        self.stretch_box.blockSignals(False)
        self._apply_colormap()
        self.reset_levels()
        self.stretchChanged.emit(stretch)

    def set_colormap(self, name: str):
        if name not in COLORMAPS:
            raise ValueError(f"unknown colour map {name!r}")
        self.colormap_name = name
        with QSignalBlocker(self.cmap_box):
            self.cmap_box.setCurrentText(name)
        self.overlay_items.set_colors(overlay_colors(name))    # seen on every map
        self._apply_colormap()
        self.styleChanged.emit()

    def set_inverted(self, inverted: bool):
        self.inverted = bool(inverted)
        self.invert_box.blockSignals(True)
        self.invert_box.setChecked(self.inverted)
        self.invert_box.blockSignals(False)
        self._apply_colormap()
        self.styleChanged.emit()

    def set_show_mask(self, show: bool):
        self.show_mask = bool(show)
        self.mask_box.blockSignals(True)
        self.mask_box.setChecked(self.show_mask)
        self.mask_box.blockSignals(False)
        for item in self.masks.values():
            item.setVisible(self.show_mask)
        self.styleChanged.emit()

    def set_crosshair(self, on: bool):
        self.crosshair = bool(on)
        for line in self.crosshairs:
            line.setVisible(self.crosshair)

    def set_blink_model(self, show_model: bool):
        """Blink: the Image panel shows the model instead (same levels)."""
        self._blink_model = show_model
        if self.panels is not None:
            self.images["image"].setImage(
                self.panels["model" if show_model else "image"], autoLevels=False,
                levels=self.histogram.getLevels())
            set_titles(self.plots, self.panels, show_model)

    def _apply_colormap(self):
        self.histogram.gradient.setColorMap(make_colormap(
            self.colormap_name, self.stretch, self.inverted, self.panels,
            self.levels() if self.panels is not None else None))
        self.histogram.gradient.showTicks(False)
        self._sync_lut()

    def _sync_levels(self, *_):
        levels = self.histogram.getLevels()
        for key, item in self.images.items():
            if key != "image":
                item.setLevels(levels)

    def _sync_lut(self, *_):
        lut = self.histogram.gradient.getLookupTable(512, alpha=False)
        for item in self.images.values():
            item.setLookupTable(lut)

    # -- view state (sessions) -----------------------------------------------------------

    def view_range(self) -> list[list[float]]:
        return [list(r) for r in self.plots["image"].getViewBox().viewRange()]

    def set_view_range(self, ranges):
        """Show ((x0, x1), (y0, y1)), kept through resizes until the user pans or zooms."""
        (x0, x1), (y0, y1) = ranges
        self.fit_view, self.user_view = False, QRectF(x0, y0, x1 - x0, y1 - y0)
        self.plots["image"].getViewBox().setRange(rect=self.user_view, padding=0.0)

    # -- cursor readout -----------------------------------------------------------------

    def plot_at(self, scene_pos) -> pg.PlotItem | None:
        for plot in self.plots.values():
            if plot.getViewBox().sceneBoundingRect().contains(scene_pos):
                return plot
        return None

    def _on_mouse_moved(self, scene_pos):
        plot = self.plot_at(scene_pos)
        if plot is None or self.panels is None:
            return
        point = plot.getViewBox().mapSceneToView(scene_pos)
        if self.crosshair:
            for n, line in enumerate(self.crosshairs):
                line.setPos(point.y() if n % 2 == 0 else point.x())
        self._readout_at = self.view_to_stamp(point.x(), point.y())
        self._show_readout(self.readout_text(*self._readout_at))

    def _show_readout(self, text: str):
        self.readout.setText(text)
        self.cursorMoved.emit(text)

    def refresh_readout(self, new_source: bool):
        """The readout follows what is shown: for the same exposure (a refit) the values
        at the same stamp point; for another exposure or detection the point under the
        cursor when it is over a panel, else nothing (not the old object's numbers)."""
        if self.panels is None:
            return
        if new_source:
            self._readout_at = None
            scene_pos = cursor_scene_pos(self.graphics)
            plot = None if scene_pos is None else self.plot_at(scene_pos)
            if plot is not None:
                point = plot.getViewBox().mapSceneToView(scene_pos)
                self._readout_at = self.view_to_stamp(point.x(), point.y())
        if self._readout_at is None:
            self._show_readout(EMPTY_READOUT)
        else:
            self._show_readout(self.readout_text(*self._readout_at))

    def readout_text(self, u: float, v: float) -> str:
        """The readout of stamp point (u, v) on the shown exposure (`readout_text`)."""
        return readout_text(self.panels, u, v, self.pixel_to_sky)

    def view_to_scene(self, key: str, u: float, v: float) -> QPointF:
        """Scene position of stamp point (u, v) in panel ``key`` (tests, markers), as
        drawn (sky-aligned or not)."""
        return self.plots[key].getViewBox().mapViewToScene(
            self.stamp_transform.map(QPointF(u, v)))

    def scene_to_stamp(self, key: str, scene_pos: QPointF) -> tuple[float, float]:
        """Stamp coordinates under scene position ``scene_pos`` in panel ``key``."""
        point = self.plots[key].getViewBox().mapSceneToView(scene_pos)
        return self.view_to_stamp(point.x(), point.y())
