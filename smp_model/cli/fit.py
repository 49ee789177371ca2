"""``smp fit``: fit one detection from a manifest, a DES-style folder set, or the demo."""
from __future__ import annotations

import dataclasses

import json
import sys
import time
from pathlib import Path

from ..errors import PSF_FILES_RUN_CODE, ManifestError
from ..outputs.clients import DS9_COMMAND
from .arguments import (Progress, add_model_arguments, add_shot_noise_arguments, float_list,
                        number, settings_from_args)

__all__ = ["fit_summary", "input_files", "load_manifest", "register", "request_from_args",
           "requested_outputs", "run", "say_psf_files_outside", "text_summary",
           "write_outputs"]


def register(sub) -> None:
    p = sub.add_parser(
        "fit", help="fit one detection",
        description="Scene-modelling photometry of one detection. Offsets are pixels relative "
                    "to the target's WCS position in the detection exposure, in the chosen "
                    "convention's frame. Write negative values with '=': --binary=-1,0,-1,0.",
        epilog=PSF_FILES_RUN_CODE)
    src = p.add_argument_group("input (a manifest, --demo, or the folder form)")
    src.add_argument("manifest", nargs="?", help="detection manifest (detection.toml)")
    src.add_argument("--demo", action="store_true", help="fit the built-in demo detection")
    src.add_argument("--stamps", help="stamp directory (<name>_<expnum>.fits)")
    src.add_argument("--psfs", help="PSF directory (<expnum>/<expnum>_<ccdnum>_piff.fits)")
    src.add_argument("--zeropoints", help="zeropoint table (ECSV/CSV/FITS)")
    src.add_argument("--name")
    src.add_argument("--ra", type=number(0, 360), help="detection RA, ICRS degrees")
    src.add_argument("--dec", type=number(-90, 90), help="detection Dec, ICRS degrees")
    src.add_argument("--band")
    src.add_argument("--expnum", type=int, help="detection exposure")
    src.add_argument("--ccdnum", type=int, help="detection CCD")
    src.add_argument("--color-gi", type=number(), default=0.61, help="g-i for the WCS (0.61)")
    src.add_argument("--origin-rule", choices=("des", "piff"), default="des",
                     help="stamp-origin rule for the folder form (default: des, ceil(x)-14)")
    src.add_argument("--write-manifest", metavar="PATH",
                     help="write the manifest built from the folder form")
    m = add_model_arguments(p)
    m.add_argument("--offset", type=float_list(2), metavar="DX,DY",
                   help="single-target offset, px (default 0,0 exact; -1,-1 legacy)")
    m.add_argument("--binary", type=float_list(4), metavar="DX1,DX2,DY1,DY2",
                   help="fit two sources at these offsets (published order)")
    m.add_argument("--optimize", action="store_true",
                   help="search positions from --binary or --offset (fluxes solved exactly at "
                        "every step)")
    m.add_argument("--shot-noise", action="store_true",
                   help="also refit with the source's Poisson variance (gain from the "
                        "manifest's detection exposure, or --gain)")
    add_shot_noise_arguments(m, "detection-stamp gain, electrons per SCI unit (implies "
                                "--shot-noise)")
    o = p.add_argument_group("output")
    o.add_argument("--table", metavar="PATH",
                   help="flux table (.ecsv, .fits, .vot/.xml VOTable; .csv: values only, "
                        "without units or metadata)")
    o.add_argument("--fits", metavar="PATH",
                   help="per-exposure image/model/residual/target/weight/mask HDUs with a "
                        "WCS each, the detection first: "
                        f"'{DS9_COMMAND.format(cube='PATH', regions='REGIONS')}' shows it "
                        "with the --regions circles on their sources")
    o.add_argument("--regions", metavar="REGIONS",
                   help="DS9 region file (icrs) of the fitted sources and the grid outline")
    o.add_argument("--figure", metavar="PATH", help="five-panel figure (.png, .pdf, .svg)")
    o.add_argument("--figure-exposures", choices=("detection", "all"), default="detection")
    o.add_argument("--sky-aligned", action="store_true",
                   help="draw the figure north up, east left at one angular scale, as the "
                        "inspector's View > Sky-aligned")
    o.add_argument("--overwrite", action="store_true", help="replace existing output files")
    o.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    o.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(func=run)


def load_manifest(args):
    """The manifest named by the arguments (positional, --demo or the folder form)."""
    from ..inputs.manifest import DetectionManifest
    folder = [args.stamps, args.psfs, args.zeropoints]
    if sum([bool(args.manifest), args.demo, any(folder)]) != 1:
        raise ManifestError("give exactly one of: a manifest, --demo, or the folder form "
                            "(--stamps --psfs --zeropoints ...)")
    if args.demo:
        from ..simulation.demo import demo_manifest_path
        return DetectionManifest.read(demo_manifest_path())
    if args.manifest:
        return DetectionManifest.read(args.manifest)
    needed = {"--stamps": args.stamps, "--psfs": args.psfs, "--zeropoints": args.zeropoints,
              "--name": args.name, "--ra": args.ra, "--dec": args.dec, "--band": args.band,
              "--expnum": args.expnum, "--ccdnum": args.ccdnum}
    missing = [k for k, v in needed.items() if v is None]
    if missing:
        raise ManifestError(f"the folder form needs {', '.join(missing)}")
    from ..inputs.folder import manifest_from_folder
    manifest = manifest_from_folder(args.stamps, args.psfs, args.zeropoints, name=args.name,
                                    ra=args.ra, dec=args.dec, band=args.band,
                                    expnum=args.expnum, ccdnum=args.ccdnum,
                                    color_gi=args.color_gi, origin_rule=args.origin_rule,
                                    settings=settings_from_args(args))
    if args.write_manifest:   # inside `run`'s transaction: kept only if the fit succeeds
        manifest.write(args.write_manifest, overwrite=args.overwrite)
    return manifest


def request_from_args(args):
    """The `FitRequest` the options describe."""
    from ..fit.request import FitRequest
    if args.binary is not None and args.offset is not None:
        raise ValueError("give --offset (single target) or --binary (two sources), not both")
    return FitRequest(mode="binary" if args.binary is not None else "single",
                      offsets=args.binary if args.binary is not None else args.offset,
                      optimize=args.optimize, shot_noise=args.shot_noise, gain=args.gain,
                      shot_noise_iterations=args.shot_noise_iterations,
                      settings=settings_from_args(args))


def run(args) -> int:
    from ..fit.measure import measure
    from ..fit.photometry import DetectionPhotometry
    t0 = time.perf_counter()
    request = request_from_args(args)   # option errors before any file is read
    outputs = requested_outputs(args)   # every output path checked before the fit
    progress = Progress(args.quiet)
    with outputs:   # all outputs, or none: written when everything succeeded
        manifest = load_manifest(args)
        outputs.check(inputs=input_files(manifest, args))
        request.check_gain(manifest)   # a shot-noise refit without a gain: before any PSF
        say_psf_files_outside(manifest, progress)
        phot = DetectionPhotometry(manifest, request.settings, progress=progress)
        if request.optimize:
            progress(0.0, "searching binary positions" if request.mode == "binary"
                     else "searching the target position")
        fit = measure(phot, request)
        write_outputs(fit, args)
    if args.write_manifest:
        print(f"smp: wrote manifest {Path(args.write_manifest).absolute()}", file=sys.stderr)
    fit.timings["total_s"] = time.perf_counter() - t0
    if args.json:
        print(json.dumps(fit_summary(fit), indent=2, allow_nan=True))
    else:
        print(text_summary(fit))
    return 0


def requested_outputs(args):
    """The files the options ask for, as one `smp_model.files.OutputFiles` transaction:
    paths checked now (distinct, writable, not existing unless --overwrite), formats too
    (an unknown extension is refused before the fit, not after)."""
    from ..files import OutputFiles
    if args.write_manifest and not any((args.stamps, args.psfs, args.zeropoints)):
        raise ValueError("--write-manifest writes the manifest the folder form (--stamps "
                         "--psfs --zeropoints) builds; a manifest given is not rewritten")
    if args.table:
        from ..outputs.tables import table_format
        table_format(args.table)
    if args.figure:
        from ..outputs.figures import FIGURE_FORMATS
        if Path(args.figure).suffix.lower() not in FIGURE_FORMATS:
            raise ValueError(f"{args.figure}: figure format must be one of "
                             f"{', '.join(FIGURE_FORMATS)}")
    return OutputFiles({"--table": args.table, "--fits": args.fits, "--regions": args.regions,
                        "--figure": args.figure, "--write-manifest": args.write_manifest},
                       overwrite=args.overwrite)


def input_files(manifest, args) -> dict[str, list]:
    """The files the fit reads, which no output may replace (even with --overwrite)."""
    return {"manifest": [manifest.path] if manifest.path else [],
            "stamp": [e.stamp for e in manifest.exposures],
            "PSF file": [e.psf for e in manifest.exposures],
            "PSF WCS header": [e.psf_wcs_header for e in manifest.exposures
                               if e.psf_wcs_header is not None],
            "zeropoint table": [args.zeropoints] if args.zeropoints else []}


def say_psf_files_outside(manifest, progress) -> None:
    """A progress line naming the PSF files the fit reads from outside the manifest's
    folder (`DetectionManifest.psf_files_outside`, the trust rule): they run code."""
    if manifest.path is None:   # the folder form: the user named the PSF folder
        return
    outside = manifest.psf_files_outside(manifest.path.parent)
    if outside:
        folders = sorted({str(p.parent) for p in outside})
        shown = ", ".join(folders[:3]) + (f" and {len(folders) - 3} more"
                                          if len(folders) > 3 else "")
        progress(0.0, f"reading {len(outside)} PSF file(s) from outside "
                      f"{manifest.path.parent}, in {shown} (PSF files run code)")


def write_outputs(fit, args) -> None:
    from ..outputs.cubes import write_fits
    from ..outputs.regions import write_regions
    from ..outputs.tables import write_table
    if args.table:
        write_table(fit, args.table, overwrite=args.overwrite)
    if args.fits:
        write_fits(fit, args.fits, overwrite=args.overwrite)
    if args.regions:
        write_regions(fit, args.regions, overwrite=args.overwrite)
    if args.figure:
        from ..outputs.figures import \
            save_figure  # matplotlib (the [plot] extra) only for figures
        from ..outputs.display import PUBLISHED_STYLE
        style = dataclasses.replace(PUBLISHED_STYLE, sky_aligned=args.sky_aligned)
        save_figure(fit, args.figure, exposures=args.figure_exposures,
                    overwrite=args.overwrite, style=style)


def fit_summary(fit) -> dict:
    """The ``--json`` object (`FitRecord.to_json`)."""
    from ..outputs.record import fit_record
    return fit_record(fit).to_json()


def text_summary(fit) -> str:
    from ..outputs.record import fit_record
    return fit_record(fit).text()
