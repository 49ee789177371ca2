"""How the programs astronomers use open the files written here (no imports: the CLI's
help reads it before any engine machinery is loaded)."""
from __future__ import annotations

__all__ = ["DS9_COMMAND"]

#: The DS9 command that shows the detection exposure with the region file's circles on
#: their sources (``{cube}``: the ``--fits`` file, ``{regions}``: the ``--regions``
#: file).  DS9 skips an empty primary HDU and displays the first image extension, with
#: that extension's own WCS: the cube's HDU 1, the detection's IMAGE.
DS9_COMMAND = "ds9 {cube} -regions {regions}"
