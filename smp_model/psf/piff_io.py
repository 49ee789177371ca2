"""Reading Piff PSF files with Piff's own reader, without its slowest steps.

Piff reads its FITS tables through fitsio, and fitsio turns every byte-string column into
numpy unicode with one structured ``astype``.  numpy's string casts run at ~200 ns per
character, and a DES Piff file stores its WCS as base64 text in twelve 15.9 kB columns: that
cast is ~50 ms of a ~80 ms read (numpy 2.4, fitsio 1.4; measured on the DES sample).
`PiffFile` gives `piff.readers.FitsReader` the file as fitsio does, except that tables with
wide string columns are read as raw records (fitsio's own record read, before its cast)
and decoded by Python's codec (~100x faster).  What Piff builds from it is identical to
what `piff.PSF.read` returns (tested on every file of the sample).

A fit draws the PSF and never looks at the stars Piff fitted it to; ``stars=False``
leaves that table unread (~8 ms of a DES file's ~35 ms), so the PSF has no ``stars``.
A WCS map made of galsim's own classes skips the checks Piff runs for Python 2 and pixmappy
maps (`_reader_class`).
"""
from __future__ import annotations

import contextlib
import functools
import os

import fitsio
import galsim
import numpy as np

__all__ = ["STARS_SUFFIX", "PiffFile", "read_piff"]

STARS_SUFFIX = "_stars"

# String columns at least this wide (bytes) are decoded by us; narrower ones cost fitsio
# little, and leaving them to it keeps its behaviour exactly.
_WIDE_STRING_BYTES = 1024


class PiffFile:
    """An open FITS file offering what `piff.readers.FitsReader` uses of `fitsio.FITS`
    (``name in f``, ``f[name]``, iteration over HDUs).  Use as a context manager."""

    def __init__(self, path: str | os.PathLike, stars: bool = True):
        self.path = os.fspath(path)
        self._fitsio = fitsio.FITS(self.path)
        try:
            self.extnames: list[str] = [hdu.get_extname() for hdu in self._fitsio]
        except Exception:
            self._fitsio.close()
            raise
        self._hdus: dict = {}
        # Piff names the table of a PSF's stars <psf name>_stars.
        self._hidden = set() if stars else {name for name in self.extnames
                                             if name.endswith(STARS_SUFFIX)}

    def __enter__(self) -> "PiffFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._fitsio.close()

    def __contains__(self, extname: str) -> bool:
        return extname not in self._hidden and extname in self._fitsio

    def __getitem__(self, extname: str):
        # Piff asks for an HDU several times (its columns, then its rows); working out
        # whether it has wide strings costs fitsio a parse of every column (~0.3 ms), so once.
        if extname not in self._hdus:
            hdu = self._fitsio[extname]
            self._hdus[extname] = _WideStringTable(hdu) if _has_wide_strings(hdu) else hdu
        return self._hdus[extname]

    def read_psf(self):
        """The Piff PSF in this file, as `piff.PSF.read` would return it."""
        import piff
        from piff.config import LoggerWrapper

        # What piff.PSF.read does after opening the file; _read is Piff's documented hook
        # for reading a PSF from a reader.
        return piff.PSF._read(_reader_class()(self, base_name=None), "psf",
                              LoggerWrapper(None))


@functools.cache
def _reader_class():
    """`piff.readers.FitsReader`, except for a WCS map made of galsim's own WCS classes.

    Piff checks every WCS map it reads with ``repr`` (a Python 2 pickle fails it) and
    ``copy.deepcopy`` (pixmappy maps pickled before astropy 6.1.5 fail it, and Piff
    repairs them); both throw the result away.  A galsim WCS passes both, and for a DES
    ``RaDecFunction`` the copy recompiles its 140 kB function (~1.5 ms a file): such a map
    is decoded as Piff decodes it and returned as it is.  Any other map, or one that does
    not decode, goes through Piff's own reader."""
    from piff.readers import FitsReader, _read_chunked_objs

    class Reader(FitsReader):
        @contextlib.contextmanager
        def nested(self, name):   # Piff's makes a FitsReader
            yield type(self)(self._fits, base_name=self.get_full_name(name))

        def read_wcs_map(self, name, logger):
            extname = self.get_full_name(name)
            if extname not in self._fits:
                return None, None
            table = self._fits[extname]
            columns = table.get_colnames()
            if "chipnums" not in columns or "wcs_nchunks" not in columns:
                return super().read_wcs_map(name, logger)   # not Piff >= 1.7's layout
            data = table.read()
            try:
                wcs_list = _read_chunked_objs(data, "wcs")
            except Exception:   # noqa: BLE001 - Piff's reader retries and reports
                return super().read_wcs_map(name, logger)
            if not all(type(w).__module__.split(".")[0] == "galsim" and
                       isinstance(getattr(w, "_origin", None), (type(None), galsim.PositionD))
                       for w in wcs_list):
                return super().read_wcs_map(name, logger)
            pointing = (galsim.CelestialCoord(data["ra"][0] * galsim.hours,
                                              data["dec"][0] * galsim.degrees)
                        if "ra" in columns else None)
            return dict(zip(data["chipnums"], wcs_list)), pointing

    return Reader


def read_piff(path: str | os.PathLike, stars: bool = True):
    """`piff.PSF.read` of ``path`` through `PiffFile` (same result, faster; without the
    PSF's ``stars`` unless ``stars``)."""
    with PiffFile(path, stars=stars) as f:
        return f.read_psf()


def _has_wide_strings(hdu) -> bool:
    if not hasattr(hdu, "get_rec_dtype"):   # image HDU
        return False
    dtype = hdu.get_rec_dtype()[0]
    return any(dtype[name].kind == "S" and dtype[name].itemsize >= _WIDE_STRING_BYTES
               for name in dtype.names)


class _WideStringTable:
    """A binary table read as fitsio would (string columns as str), but decoded fast."""

    def __init__(self, fitsio_hdu):
        self._hdu = fitsio_hdu

    def get_colnames(self) -> list[str]:
        return self._hdu.get_colnames()

    def read_header(self):
        return self._hdu.read_header()

    def read(self) -> np.ndarray:
        raw = self._raw_records()
        columns = {name: _as_unicode(raw[name]) if raw.dtype[name].kind == "S" else raw[name]
                   for name in raw.dtype.names}
        table = np.empty(len(raw), dtype=[(name, col.dtype, col.shape[1:])
                                          for name, col in columns.items()])
        for name, col in columns.items():
            table[name] = col
        return table

    def _raw_records(self) -> np.ndarray:
        """The table's records as stored (strings as bytes): what fitsio's ``read`` reads
        before it casts strings to unicode (`fitsio.hdu.TableHDU._read_all`).  Tables of
        variable-length or bit columns, which fitsio reads column by column, go through
        its public reader and cast instead."""
        hdu = self._hdu
        dtype, _, variable = hdu.get_rec_dtype()
        if np.any(variable) or hdu._check_tbit():
            return hdu.read()
        records = np.zeros(hdu.get_nrows(), dtype=dtype)
        hdu._FITS.read_as_rec(hdu._ext + 1, 1, hdu.get_nrows(), records)
        for colnum, name in enumerate(records.dtype.names):
            info = hdu._info["colinfo"][colnum]
            hdu._rescale_and_convert_field_inplace(records, name, info["tscale"],
                                                   info["tzero"])
        return records


def _as_unicode(column: np.ndarray) -> np.ndarray:
    width = max(column.dtype.itemsize, 1)
    # Trailing NULs are dropped by numpy; FITS pads strings with them or with blanks, and
    # fitsio (cfitsio) drops trailing blanks too.
    values = [value.decode("ascii").rstrip(" ") for value in column.ravel()]
    return np.array(values, dtype=f"U{width}").reshape(column.shape)
