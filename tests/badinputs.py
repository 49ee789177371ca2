"""Factories that write broken inputs into a temporary directory, for the bad-input catalogue
(`tests/test_bad_inputs.py`) and the property tests (`tests/test_properties.py`).

Everything starts from the real DES sample: a manifest is re-written into the temporary
directory with absolute paths to the sample's files, and only the file being broken is
copied (and then broken) next to it.  The sample itself is never modified.
"""
from __future__ import annotations

import importlib.abc
import os
import shutil
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import tomli_w
from astropy.io import fits

from smp_model.inputs.manifest import DetectionManifest

DETECTION = "eris"              # the sample detection the catalogue breaks
FAKE_PIXMAPPY_CLASS = "GalSimWCS"


# -- manifests -------------------------------------------------------------------------

def sample_manifest(sample: Path, name: str = DETECTION) -> DetectionManifest:
    return DetectionManifest.read(sample / name / "detection.toml")


def manifest_doc(sample: Path, name: str = DETECTION, n_exposures: int | None = None
                 ) -> dict[str, Any]:
    """The sample manifest as a TOML-ready dict with absolute paths; ``n_exposures`` keeps
    the detection exposure and the first others (a smaller, faster fit)."""
    manifest = sample_manifest(sample, name)
    doc = manifest.to_dict()
    if n_exposures is not None:
        det = manifest.detection_index
        others = [e for n, e in enumerate(doc["exposures"]) if n != det]
        doc["exposures"] = [doc["exposures"][det]] + others[:n_exposures - 1]
    return doc


def detection_entry(doc: dict[str, Any]) -> dict[str, Any]:
    """The ``[[exposures]]`` table of the detection exposure in ``doc``."""
    det = doc["detection"]
    return next(e for e in doc["exposures"]
                if (e["expnum"], e["ccdnum"]) == (det["expnum"], det["ccdnum"]))


def other_entry(doc: dict[str, Any]) -> dict[str, Any]:
    """The first ``[[exposures]]`` table that is not the detection exposure."""
    det = detection_entry(doc)
    return next(e for e in doc["exposures"] if e is not det)


def write_doc(directory: Path, doc: dict[str, Any], filename: str = "detection.toml") -> Path:
    path = Path(directory) / filename
    path.write_text(tomli_w.dumps(doc))
    return path


# -- stamps ----------------------------------------------------------------------------

def stamp_arrays(path: Path) -> dict[str, np.ndarray]:
    """SCI, MSK and WGT of a (valid) stamp as native-endian arrays."""
    with fits.open(path) as hdul:
        return {name: np.array(hdul[name].data).astype(hdul[name].data.dtype.newbyteorder("="))
                for name in ("SCI", "MSK", "WGT")}


def write_hdus(path: Path, hdus: dict[str, np.ndarray | None]) -> Path:
    """A FITS file with an empty primary HDU and one image HDU per ``(name, array)``
    (``None`` values are left out)."""
    hdul = fits.HDUList([fits.PrimaryHDU()] + [fits.ImageHDU(a, name=n)
                                                for n, a in hdus.items() if a is not None])
    hdul.writeto(path, overwrite=True)
    return Path(path)


def broken_stamp(directory: Path, doc: dict[str, Any], entry: dict[str, Any],
                 **changes: np.ndarray | None) -> Path:
    """Write a copy of ``entry``'s stamp with HDUs replaced (an array) or removed (None),
    point ``entry`` at it and return its path."""
    source = Path(entry["stamp"])
    arrays: dict[str, np.ndarray | None] = stamp_arrays(source)
    arrays.update(changes)
    path = write_hdus(Path(directory) / source.name, arrays)
    entry["stamp"] = str(path)
    return path


def truncated_copy(source: Path, destination: Path, fraction: float = 0.5) -> Path:
    data = Path(source).read_bytes()
    Path(destination).write_bytes(data[:int(len(data) * fraction)])
    return Path(destination)


def garbage_file(destination: Path, size: int = 5000, seed: int = 0) -> Path:
    Path(destination).write_bytes(np.random.default_rng(seed).bytes(size))
    return Path(destination)


def non_piff_fits(destination: Path) -> Path:
    """A valid FITS file that is neither a Piff file nor a pixelised PSF."""
    fits.HDUList([fits.PrimaryHDU(np.zeros((8, 8))),
                  fits.BinTableHDU.from_columns([fits.Column("x", "D", array=[1.0])],
                                                name="STUFF")]).writeto(destination)
    return Path(destination)


# -- a Piff file that needs pixmappy ---------------------------------------------------

_FAKE_PIXMAPPY_SOURCE = f'''
"""Throwaway stand-in for pixmappy, made by tests/badinputs.py: only its name matters."""
import galsim


class {FAKE_PIXMAPPY_CLASS}(galsim.PixelScale):
    pass
'''


def make_fake_pixmappy(directory: Path) -> Path:
    """Write a module ``pixmappy`` into ``directory/fake_modules``; return that folder
    (put it on ``sys.path`` to import it)."""
    folder = Path(directory) / "fake_modules"
    folder.mkdir(exist_ok=True)
    (folder / "pixmappy.py").write_text(textwrap.dedent(_FAKE_PIXMAPPY_SOURCE))
    return folder


def pixmappy_piff(directory: Path, real_piff: Path) -> Path:
    """Write a Piff file (a copy of ``real_piff``) whose pickled WCS is an instance of
    ``pixmappy.GalSimWCS`` from a throwaway module; the module is importable only while
    this function runs (the caller must still block a real pixmappy, see `BlockImports`).
    """
    import piff
    folder = make_fake_pixmappy(directory)
    # A real pixmappy imported earlier in the session is set aside while the fake is used.
    real = {m: sys.modules.pop(m) for m in list(sys.modules) if m.split(".")[0] == "pixmappy"}
    sys.path.insert(0, str(folder))
    try:
        import pixmappy
        psf = piff.PSF.read(str(real_piff))
        psf.wcs = {chip: getattr(pixmappy, FAKE_PIXMAPPY_CLASS)(0.263) for chip in psf.wcs}
        path = Path(directory) / Path(real_piff).name
        psf.write(str(path))
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop("pixmappy", None)
        sys.modules.update(real)
    return path


class BlockImports(importlib.abc.MetaPathFinder):
    """Meta-path finder that makes ``import <name>`` fail as if ``name`` were not
    installed (insert it first in ``sys.meta_path``)."""

    def __init__(self, *names: str):
        self.names = set(names)

    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".")[0] in self.names:
            raise ModuleNotFoundError(f"No module named {fullname!r}", name=fullname)
        return None


# -- folder form -----------------------------------------------------------------------

def zeropoints_without(sample: Path, destination: Path, expnum: int) -> Path:
    """A copy of the sample's zeropoint table without the rows of ``expnum``."""
    from astropy.table import Table
    table = Table.read(sample / "zeropoints.ecsv", format="ascii.ecsv")
    table[table["expnum"] != expnum].write(destination, format="ascii.ecsv")
    return Path(destination)


def folder_args(sample: Path, zeropoints: Path, name: str = DETECTION) -> list[str]:
    """``smp fit`` arguments of the folder form for a sample detection."""
    manifest = sample_manifest(sample, name)
    return ["--stamps", str(sample / name / "stamps"), "--psfs", str(sample / "psfs"),
            "--zeropoints", str(zeropoints), "--name", name, "--ra", repr(manifest.ra),
            "--dec", repr(manifest.dec), "--band", manifest.band,
            "--expnum", str(manifest.detection_expnum),
            "--ccdnum", str(manifest.detection_ccdnum)]


def is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def copy_file(source: Path, directory: Path) -> Path:
    destination = Path(directory) / Path(source).name
    shutil.copyfile(source, destination)
    return destination


# -- damaged compressed files and headers (issue 27) -------------------------------------

def compressed_copy(source: Path, destination: Path, damage: str | None = None) -> Path:
    """``source`` compressed as its destination's suffix says (.gz, .bz2, .xz), then
    damaged: ``"deflate"`` flips the first bytes of the compressed data (the decoder
    meets an invalid block), ``"crc"`` the stored checksum (every byte decodes, the
    check fails), ``"middle"`` flips 40 bytes in the middle (a gzip stream then decodes to
    garbage until the checksum at its end, and astropy read "HDUs" from that garbage for
    minutes), ``"truncate"`` cuts the stream in half."""
    import bz2
    import gzip
    import lzma
    compress = {".gz": gzip.compress, ".bz2": bz2.compress, ".xz": lzma.compress}
    data = bytearray(compress[Path(destination).suffix](Path(source).read_bytes()))
    if damage == "deflate":
        data[10:14] = bytes(b ^ 0xFF for b in data[10:14])
    elif damage == "middle":
        middle = len(data) // 3
        data[middle:middle + 40] = bytes(b ^ 0x5A for b in data[middle:middle + 40])
    elif damage == "crc":
        data[-8] ^= 0xFF
    elif damage == "truncate":
        data = data[:len(data) // 2]
    Path(destination).write_bytes(bytes(data))
    return Path(destination)


def damaged_card(source: Path, destination: Path, card: bytes) -> Path:
    """A copy of the FITS file ``source`` in which the header card starting with ``card``
    (e.g. ``b"EXTNAME = 'SCI"``) loses the rest of its text, closing quote included."""
    data = bytearray(Path(source).read_bytes())
    at = data.find(card)
    assert at >= 0 and at % 80 == 0, card
    data[at:at + 80] = card.ljust(80)
    Path(destination).write_bytes(bytes(data))
    return Path(destination)


def symlink_loop(directory: Path, name: str) -> Path:
    """A symbolic link ``directory/name`` that points at itself."""
    link = Path(directory) / name
    link.symlink_to(link.name)
    return link


def over_long_path(directory: Path) -> Path:
    """A path under ``directory`` with a 301-byte name (over any file system's NAME_MAX)."""
    return Path(directory) / ("x" * 296 + ".fits")
