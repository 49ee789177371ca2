"""The inspector: one detection's five panels, exposures, fit controls, flux table and Δχ²
map, in `InspectorWindow` and the widgets and collaborators it is made of."""
from .window import InspectorWindow

__all__ = ["InspectorWindow"]
