"""Everything written from a fit: the column and flag registry (`columns`), the one record
of a fit (`record`), flux tables (`tables`), FITS cubes (`cubes`), DS9 regions (`regions`),
how panels are drawn (`display`) and publication figures (`figures`).
"""
