"""Everything written from a fit: the column and flag registry (`columns`), the one record
of a fit (`record`), flux tables (`tables`; FITS `fits_tables`, VOTable `votable`, their
metadata `provenance`), FITS cubes (`cubes`, the stamps' WCS `stamp_wcs`), DS9 regions
(`regions`), how clients open them (`clients`), how panels are drawn (`display`) and
publication figures (`figures`).
"""
