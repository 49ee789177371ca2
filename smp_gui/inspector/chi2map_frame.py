"""The frame the Δχ² map is drawn in, so that it shares the panels' frame.

A map's cells are secondary offsets ``(dx, dy)``: pixels of the detection exposure's CCD
axes in the convention's frame (`smp_model.conventions`; the engine's own numbers).  In CCD
axes the map's view coordinates are those offsets.  Sky-aligned (View > Sky-aligned), the
map is drawn through the same transform as the detection exposure's stamps: an offset goes
to the stamp point of a source there (`smp_model.fit.results.data_frame_centers`, which
knows the legacy convention's shift), and that point through the exposure's
`smp_model.outputs.display.sky_aligned_affine` (the panels' ``stamp_transform``).  The map's
view coordinates are then the panels' view coordinates (arcsec from the target's sky
position, north up, east left), so a cell lies where the secondary would be drawn on the
stamps, in the same direction from the target.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import pyqtgraph as pg
from PyQt6.QtCore import QPointF
from PyQt6.QtGui import QTransform

from smp_model.fit.results import data_frame_centers

from .coordinates import affine_transform, ccd_to_view

__all__ = ["CCD_AXES", "CCD_FRAME", "SKY_AXES", "MapFrame", "OffsetAxis", "sky_frame"]

# The map's axis labels (bottom, left) in each frame.  Sky-aligned, view X is the negative
# of the east offset (`sky_aligned_affine`): the bottom axis labels its ticks with the east
# offset (`OffsetAxis`), growing to the left as RA does on the sky.
CCD_AXES = ("secondary dx (CCD px)", "secondary dy (CCD px)")
SKY_AXES = ("secondary ΔRA cos δ (″), east ←", "secondary ΔDec (″), north ↑")


@dataclass(frozen=True)
class MapFrame:
    """How the map's offsets are drawn.

    Attributes
    ----------
    to_view : QTransform
        Secondary offset (dx, dy), px in the convention's frame, to the map plot's view
        coordinates (identity in CCD axes; sky-aligned: arcsec, see the module docstring).
    sky : bool
        Whether the view coordinates are the sky-aligned frame.
    notice : str
        Why the map is in CCD axes while the panels are asked to be sky-aligned ("": no
        reason to give).
    """

    to_view: QTransform = field(default_factory=QTransform)
    sky: bool = False
    notice: str = ""

    def offset_to_view(self, dx: float, dy: float) -> tuple[float, float]:
        """View coordinates of secondary offset (dx, dy) px."""
        point = self.to_view.map(QPointF(dx, dy))
        return point.x(), point.y()

    def view_to_offset(self, x: float, y: float) -> tuple[float, float]:
        """Secondary offset (dx, dy) px at view point (x, y)."""
        inverse, _ = self.to_view.inverted()
        point = inverse.map(QPointF(x, y))
        return point.x(), point.y()

    def sky_offset(self, dx: float, dy: float) -> tuple[float, float]:
        """(ΔRA cos δ, ΔDec) in arcsec from the target's sky position of secondary offset
        (dx, dy) px (sky frame only): view X is minus the east offset."""
        x, y = self.offset_to_view(dx, dy)
        return -x + 0.0, y


CCD_FRAME = MapFrame()


def sky_frame(scene, overlays) -> MapFrame:
    """The sky-aligned `MapFrame` of ``scene``'s detection exposure.

    Parameters
    ----------
    scene : smp_model.scene.model.SceneModel
        The scene of the fit shown (its convention places the offsets).
    overlays : smp_model.outputs.display.Overlays
        The detection exposure's overlays (its ``sky_affine`` is the panels' transform of
        that exposure).
    """
    detection = scene.exposures[scene.detection_index]
    # stamp point of a source at offset (0, 0): offsets are a constant shift from it
    x0, y0 = data_frame_centers(scene, [(0.0, 0.0)])[0]
    u0, v0 = ccd_to_view(x0, y0, detection.origin)
    # Qt composes left to right: the shift to stamp coordinates, then the stamps' transform
    return MapFrame(QTransform.fromTranslate(u0, v0) * affine_transform(overlays.sky_affine),
                    sky=True)


class OffsetAxis(pg.AxisItem):
    """An axis that can label its ticks with the negated value (``negate``): the sky
    frame's view X is west, and the axis says east."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.negate = False

    def set_negate(self, negate: bool) -> None:
        """Tick labels of -value (True) or value."""
        if negate != self.negate:
            self.negate = negate
            self.picture = None     # pyqtgraph's cached drawing of the ticks
            self.update()

    def tickStrings(self, values, scale, spacing):
        if self.negate:     # + 0.0: no "-0"
            values = [-v + 0.0 for v in values]
        return super().tickStrings(values, scale, spacing)
