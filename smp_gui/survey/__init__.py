"""The survey view: a `smp batch` output as a filterable, sortable table with linked plots,
review marks, and each detection one keystroke away in the inspector."""
from .window import SurveyWindow

__all__ = ["SurveyWindow"]
