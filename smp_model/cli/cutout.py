"""``smp cutout``: DES stamps from single-epoch CCD images, and the detection's manifest."""
from __future__ import annotations

import sys
import warnings
from pathlib import Path

from ..errors import ManifestError

__all__ = ["DEFAULT_IMAGE_PATTERN", "register", "run"]

DEFAULT_IMAGE_PATTERN = "D{expnum:08d}_*_c{ccdnum:02d}_*.fits*"


def register(sub) -> None:
    p = sub.add_parser(
        "cutout", help="cut DES stamps from single-epoch CCD images and write the manifest",
        description="For each exposure/CCD of an `smp discover` table, find its CCD image "
        "(HDUs SCI, MSK, WGT; fpacked or not) in --images, place (ra, dec) with the PSF "
        "file's WCS, cut the stamp by the DES rule (astropy Cutout2D, mode 'partial', zero "
        "fill: stamp_origin = ceil(x) - 14 for 30 px) into STAMPS/<name>_<expnum>.fits, and "
        "write the detection manifest.")
    p.add_argument("found", metavar="TABLE", help="`smp discover --out` table "
                   "(expnum, ccdnum, band)")
    p.add_argument("--images", required=True, metavar="DIR", help="folder of CCD images")
    p.add_argument("--image-pattern", default=DEFAULT_IMAGE_PATTERN,
                   help=f"file name glob per CCD, with {{expnum}}, {{ccdnum}}, {{band}} "
                   f"(default: DES naming, {DEFAULT_IMAGE_PATTERN!r})")
    p.add_argument("--psfs", required=True, metavar="DIR",
                   help="PSF folder (<expnum>/<expnum>_<ccdnum>_*.fits)")
    p.add_argument("--zeropoints", required=True, metavar="TABLE")
    p.add_argument("--stamps", required=True, metavar="DIR", help="output stamp folder")
    p.add_argument("--write-manifest", required=True, metavar="TOML")
    p.add_argument("--name", required=True)
    p.add_argument("--ra", type=float, required=True, help="ICRS degrees")
    p.add_argument("--dec", type=float, required=True, help="ICRS degrees")
    p.add_argument("--band", required=True)
    p.add_argument("--expnum", type=int, required=True, help="detection exposure")
    p.add_argument("--ccdnum", type=int, required=True, help="detection CCD")
    p.add_argument("--color-gi", type=float, default=0.61, help="g-i colour (0.61)")
    p.add_argument("--size", type=int, default=30, help="stamp size, px (30)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..files import check_writable
    from ..inputs.discovery import ExposureRef, read_found_table
    check_writable(args.write_manifest, args.overwrite)
    found = read_found_table(args.found)
    refs = [r for r in found if r.band == args.band]
    if (args.expnum, args.ccdnum) not in {(r.expnum, r.ccdnum) for r in refs}:
        refs.append(ExposureRef(args.expnum, args.ccdnum, args.band))
    stamps = Path(args.stamps)
    cut = []
    for ref in refs:
        image = _find_image(Path(args.images), args.image_pattern, ref)
        if image is None:
            if (ref.expnum, ref.ccdnum) == (args.expnum, args.ccdnum):
                raise ManifestError(f"no CCD image of the detection exposure {ref.expnum} "
                                    f"(CCD {ref.ccdnum}) matches {args.image_pattern!r}",
                                    args.images)
            warnings.warn(f"exposure {ref.expnum} (CCD {ref.ccdnum}): no CCD image in "
                          f"{args.images}; left out", stacklevel=1)
            continue
        _cut_one(args, ref, image, stamps)
        cut.append(ref)
    _write_manifest(args, cut)
    return 0


def _find_image(folder: Path, pattern: str, ref) -> Path | None:
    matches = sorted(folder.glob(pattern.format(expnum=ref.expnum, ccdnum=ref.ccdnum,
                                                band=ref.band)))
    if len(matches) > 1:
        raise ManifestError(f"several CCD images match exposure {ref.expnum} "
                            f"(CCD {ref.ccdnum}): {', '.join(m.name for m in matches)}",
                            folder)
    return matches[0] if matches else None


def _cut_one(args, ref, image: Path, stamps: Path) -> None:
    from ..errors import PSFError
    from ..inputs.cutout import cut_stamp, read_planes, write_stamp
    from ..inputs.discovery import psf_file
    from ..psf.models import load_psf
    from ..wcs.transforms import sky_to_pixel
    psf_path = psf_file(args.psfs, ref.expnum, ref.ccdnum)
    if psf_path is None:
        raise PSFError(f"PSF file for exposure {ref.expnum} (CCD {ref.ccdnum}) not found",
                       args.psfs)
    x, y = (float(v) for v in sky_to_pixel(load_psf(psf_path, color=args.color_gi).wcs,
                                           args.ra, args.dec, color=args.color_gi))
    stamp, origin = cut_stamp(read_planes(image), x, y, args.size)
    path = write_stamp(stamps / f"{args.name}_{ref.expnum}.fits", stamp, args.overwrite)
    print(f"smp: {path.name}: exposure {ref.expnum} (CCD {ref.ccdnum}) at ({x:.2f}, {y:.2f}),"
          f" stamp_origin {origin}", file=sys.stderr)


def _write_manifest(args, refs) -> None:
    from ..inputs.discovery import manifest_from_refs
    manifest = manifest_from_refs(refs, stamps=args.stamps, psfs=args.psfs,
                                  zeropoints=args.zeropoints, name=args.name, ra=args.ra,
                                  dec=args.dec, band=args.band, expnum=args.expnum,
                                  ccdnum=args.ccdnum, color_gi=args.color_gi)
    path = manifest.write(args.write_manifest, overwrite=args.overwrite)
    print(f"smp: wrote {path} ({len(manifest.exposures)} exposures)", file=sys.stderr)
