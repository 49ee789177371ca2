"""The bits of a stamp's ``MSK`` HDU: DES's ``BADPIX`` mask bits (the DESDM ``mask_bits``
definitions of the single-epoch pipeline), with a decoder.

The fit uses a pixel only where ``MSK == 0`` (`smp_model.inputs.stamps.Stamp.usable`),
whatever the bits say; the names are for people reading a mask value (the inspector's
readout, the docs' table).  Bits outside the registry are named by their value
(``bit 32768``).
"""
from __future__ import annotations

from typing import NamedTuple

__all__ = ["MASK_BITS", "MaskBit", "mask_bit", "mask_bit_names", "mask_text"]


class MaskBit(NamedTuple):
    """One bit of the mask: its value (a power of 2), its DES name and what it means."""
    value: int
    name: str
    meaning: str


MASK_BITS = (
    MaskBit(1, "BPM", "in the bad-pixel mask (hot or dead pixel or column)"),
    MaskBit(2, "SATURATE", "saturated"),
    MaskBit(4, "INTERP", "interpolated over"),
    MaskBit(8, "BADAMP", "read by a non-functional amplifier"),
    MaskBit(16, "CRAY", "cosmic ray"),
    MaskBit(32, "STAR", "bright star"),
    MaskBit(64, "TRAIL", "bleed trail"),
    MaskBit(128, "EDGEBLEED", "edge bleed"),
    MaskBit(256, "SSXTALK", "cross-talk from a super-saturated source"),
    MaskBit(512, "EDGE", "glowing CCD edge"),
    MaskBit(1024, "STREAK", "satellite or meteor streak"),
    MaskBit(2048, "SUSPECT", "nominally useful but not perfect"),
    MaskBit(4096, "FIXED", "corrected by pixcorrect"),
    MaskBit(8192, "NEAREDGE", "suspect: near the CCD edge"),
    MaskBit(16384, "TAPEBUMP", "suspect: on a known tape bump"),
)
_BY_VALUE = {bit.value: bit for bit in MASK_BITS}


def mask_bit(name: str) -> int:
    """The value of the bit named ``name`` (``"CRAY"`` -> 16); KeyError for others."""
    return {bit.name: bit.value for bit in MASK_BITS}[name]


def mask_bit_names(value: int) -> tuple[str, ...]:
    """Names of the bits set in a mask ``value``, lowest bit first (``8704`` ->
    ``("EDGE", "NEAREDGE")``); bits not in `MASK_BITS` as ``"bit <value>"``; () for 0."""
    value = int(value)
    if value < 0:          # an int16 HDU with the sign bit set: its 16 bits
        value &= 0xFFFF
    names, bit = [], 1
    while bit <= value:
        if value & bit:
            names.append(_BY_VALUE[bit].name if bit in _BY_VALUE else f"bit {bit}")
        bit <<= 1
    return tuple(names)


def mask_text(value: int) -> str:
    """A mask value in words: ``"0 (good)"``, ``"8704 EDGE+NEAREDGE"``."""
    names = mask_bit_names(value)
    return f"{int(value)} " + ("+".join(names) if names else "(good)")
