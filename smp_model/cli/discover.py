"""``smp discover``: the exposures and CCDs of a survey that contain a detection's position."""
from __future__ import annotations

import json
import sys

from ..errors import ManifestError

__all__ = ["register", "run"]


def register(sub) -> None:
    p = sub.add_parser(
        "discover", help="find the exposures/CCDs whose footprint contains a position",
        description="List every exposure of a survey exposure table (expnum, band, ra, dec "
        "of the pointing, optional mjd; ECSV/FITS/CSV) and the DECam CCD whose footprint "
        "contains (ra, dec), with the CCD pixel position. The DECam CCD layout decides; a "
        "PSF folder's files (<expnum>/<expnum>_<ccdnum>_piff.fits) give the exact WCS. "
        "With --write-manifest and the stamp/zeropoint inputs, writes the detection's "
        "manifest restricted to the exposures found.")
    p.add_argument("--exposures", required=True, metavar="TABLE",
                   help="survey exposure table (expnum, band, ra, dec[, mjd])")
    p.add_argument("--ra", type=float, required=True, help="ICRS degrees")
    p.add_argument("--dec", type=float, required=True, help="ICRS degrees")
    p.add_argument("--band", help="only exposures in this band")
    p.add_argument("--mjd-min", type=float, help="only exposures at or after this MJD")
    p.add_argument("--mjd-max", type=float, help="only exposures at or before this MJD")
    p.add_argument("--psfs", metavar="DIR", help="PSF folder: exact positions from its WCSs")
    p.add_argument("--color-gi", type=float, default=0.61, help="g-i colour (0.61)")
    p.add_argument("--no-destnosim", action="store_true",
                   help="do not use destnosim even if it can be imported")
    p.add_argument("--out", metavar="TABLE", help="write the table (ECSV/FITS/CSV)")
    p.add_argument("--json", action="store_true", help="print the rows as JSON")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    m = p.add_argument_group("manifest (--write-manifest)")
    m.add_argument("--write-manifest", metavar="TOML")
    m.add_argument("--stamps", metavar="DIR", help="stamp folder (<name>_<expnum>.fits)")
    m.add_argument("--zeropoints", metavar="TABLE")
    m.add_argument("--name")
    m.add_argument("--expnum", type=int, help="detection exposure")
    m.add_argument("--ccdnum", type=int, help="detection CCD (default: the one found)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..files import check_writable
    from ..inputs.discovery import (destnosim_survey, find_exposures, read_exposure_table,
                                    refs_of)
    if args.out:
        check_writable(args.out, args.overwrite)
    if args.write_manifest:
        check_writable(args.write_manifest, args.overwrite)
        missing = [f"--{n.replace('_', '-')}" for n in ("stamps", "psfs", "zeropoints",
                                                         "name", "expnum", "band")
                   if getattr(args, n) is None]
        if missing:
            raise ValueError(f"--write-manifest needs {', '.join(missing)}")
    exposures = read_exposure_table(args.exposures)
    survey = None if args.no_destnosim else destnosim_survey(exposures)
    found = find_exposures(exposures, args.ra, args.dec, band=args.band,
                           mjd_range=(args.mjd_min, args.mjd_max), psfs=args.psfs,
                           color_gi=args.color_gi, survey=survey)
    found.meta.update(ra=args.ra, dec=args.dec, band=args.band or "any",
                      exposure_table=str(args.exposures),
                      footprints="destnosim" if survey is not None else "DECam layout")
    print(f"smp: {len(found)} exposure(s) contain ({args.ra}, {args.dec})"
          + (" [destnosim]" if survey is not None else ""), file=sys.stderr)
    if args.out:
        from ..outputs.tables import write_table
        write_table(found, args.out, overwrite=args.overwrite)
    if args.json:
        print(json.dumps([{k: (v.item() if hasattr(v, "item") else v) for k, v in
                           zip(found.colnames, row)} for row in found], indent=2))
    elif not args.out:
        found.write(sys.stdout, format="ascii.fixed_width_two_line")
    if args.write_manifest:
        _write_manifest(args, found, refs_of(found))
    return 0


def _write_manifest(args, found, refs) -> None:
    from ..inputs.discovery import manifest_from_refs
    ccds = {r.ccdnum for r in refs if r.expnum == args.expnum}
    ccdnum = args.ccdnum if args.ccdnum is not None else (min(ccds) if len(ccds) == 1 else None)
    if ccdnum is None or ccdnum not in ccds:
        raise ManifestError(f"the detection exposure {args.expnum} does not contain "
                            f"({args.ra}, {args.dec}) on "
                            f"{'CCD ' + str(args.ccdnum) if args.ccdnum else 'any CCD'} "
                            "of the exposure table", args.exposures)
    manifest = manifest_from_refs(refs, stamps=args.stamps, psfs=args.psfs,
                                  zeropoints=args.zeropoints, name=args.name, ra=args.ra,
                                  dec=args.dec, band=args.band, expnum=args.expnum,
                                  ccdnum=ccdnum, color_gi=args.color_gi)
    path = manifest.write(args.write_manifest, overwrite=args.overwrite)
    print(f"smp: wrote {path} ({len(manifest.exposures)} exposures)", file=sys.stderr)
