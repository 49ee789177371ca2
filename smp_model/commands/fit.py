"""``smp fit``: fit one detection from a manifest, a DES-style folder set, or the demo."""
from __future__ import annotations

import json
import math
import sys
import time

from ..cli import Progress, add_model_arguments, float_list, settings_from_args
from ..errors import ManifestError
from ..psf import PSF_FILES_RUN_CODE


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
    src.add_argument("--ra", type=float, help="detection RA, ICRS degrees")
    src.add_argument("--dec", type=float, help="detection Dec, ICRS degrees")
    src.add_argument("--band")
    src.add_argument("--expnum", type=int, help="detection exposure")
    src.add_argument("--ccdnum", type=int, help="detection CCD")
    src.add_argument("--color-gi", type=float, default=0.61, help="g-i for the WCS (0.61)")
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
                   help="search positions (Powell) from --binary or --offset")
    m.add_argument("--shot-noise", action="store_true",
                   help="also refit with the source's Poisson variance (gain from the "
                        "manifest's detection exposure, or --gain)")
    m.add_argument("--gain", type=float, metavar="E_PER_UNIT",
                   help="detection-stamp gain, electrons per SCI unit (implies --shot-noise)")
    m.add_argument("--shot-noise-iterations", type=int, default=1, metavar="N",
                   help="refits for the shot-noise term (1 = published; 0 = to convergence)")
    o = p.add_argument_group("output")
    o.add_argument("--table", metavar="PATH", help="flux table (.ecsv, .fits, .csv)")
    o.add_argument("--fits", metavar="PATH", help="image/model/residual/weight cubes")
    o.add_argument("--figure", metavar="PATH", help="five-panel figure (.png, .pdf, .svg)")
    o.add_argument("--figure-exposures", choices=("detection", "all"), default="detection")
    o.add_argument("--overwrite", action="store_true", help="replace existing output files")
    o.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    o.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(func=run)


def load_manifest(args):
    """The manifest named by the arguments (positional, --demo or the folder form)."""
    from ..manifest import DetectionManifest
    folder = [args.stamps, args.psfs, args.zeropoints]
    if sum([bool(args.manifest), args.demo, any(folder)]) != 1:
        raise ManifestError("give exactly one of: a manifest, --demo, or the folder form "
                            "(--stamps --psfs --zeropoints ...)")
    if args.demo:
        from ..demo import demo_manifest_path
        return DetectionManifest.read(demo_manifest_path())
    if args.manifest:
        return DetectionManifest.read(args.manifest)
    needed = {"--stamps": args.stamps, "--psfs": args.psfs, "--zeropoints": args.zeropoints,
              "--name": args.name, "--ra": args.ra, "--dec": args.dec, "--band": args.band,
              "--expnum": args.expnum, "--ccdnum": args.ccdnum}
    missing = [k for k, v in needed.items() if v is None]
    if missing:
        raise ManifestError(f"the folder form needs {', '.join(missing)}")
    from ..folder import manifest_from_folder
    manifest = manifest_from_folder(args.stamps, args.psfs, args.zeropoints, name=args.name,
                                    ra=args.ra, dec=args.dec, band=args.band,
                                    expnum=args.expnum, ccdnum=args.ccdnum,
                                    color_gi=args.color_gi, origin_rule=args.origin_rule)
    if args.write_manifest:
        path = manifest.write(args.write_manifest, overwrite=args.overwrite)
        print(f"smp: wrote manifest {path}", file=sys.stderr)
    return manifest


def run(args) -> int:
    from ..fit import DetectionPhotometry
    from ..io_utils import check_writable
    t0 = time.perf_counter()
    for path in (args.table, args.fits, args.figure):   # refuse before a long fit, not after
        if path:
            check_writable(path, args.overwrite)
    progress = Progress(args.quiet)
    manifest = load_manifest(args)
    settings = settings_from_args(args)
    phot = DetectionPhotometry(manifest, settings, progress=progress)
    if args.binary is not None:
        if args.optimize:
            progress(0.0, "searching binary positions")
        fit = (phot.optimize_binary(args.binary) if args.optimize
               else phot.fit_binary(args.binary))
    elif args.optimize:
        progress(0.0, "searching the target position")
        fit = phot.optimize_single(args.offset)
    else:
        fit = phot.fit_single(args.offset)
    if args.shot_noise or args.gain is not None:
        fit = phot.with_shot_noise(fit, args.gain, args.shot_noise_iterations)
    write_outputs(fit, args)
    fit.timings["total_s"] = time.perf_counter() - t0
    if args.json:
        print(json.dumps(fit_summary(fit), indent=2, allow_nan=True))
    else:
        print(text_summary(fit))
    return 0


def write_outputs(fit, args) -> None:
    from ..results import write_fits, write_table
    if args.table:
        write_table(fit, args.table, overwrite=args.overwrite)
    if args.fits:
        write_fits(fit, args.fits, overwrite=args.overwrite)
    if args.figure:
        from ..figures import save_figure   # matplotlib: the [plot] extra
        save_figure(fit, args.figure, exposures=args.figure_exposures,
                    overwrite=args.overwrite)


def _num(value: float) -> float | None:
    """JSON has no NaN: undefined numbers become null."""
    return None if value is None or not math.isfinite(value) else float(value)


def _source_dict(fit, t: int) -> dict:
    s = fit.sources[t]
    d = {"flux": _num(s.flux), "flux_err": _num(s.flux_err),
         "flux_err_total": _num(s.flux_err_total), "mag": _num(s.mag),
         "mag_err": _num(s.mag_err), "mag_limit_3sigma": _num(s.mag_limit_3sigma),
         "dx": _num(s.dx), "dy": _num(s.dy), "dx_err": _num(s.dx_err),
         "dy_err": _num(s.dy_err), "x": _num(s.x), "y": _num(s.y), "ra": _num(s.ra),
         "dec": _num(s.dec)}
    if fit.shot_noise is not None:
        sn = fit.shot_noise
        d.update(flux_sn=_num(sn.flux[t]), flux_err_sn=_num(sn.flux_err[t]),
                 mag_sn=_num(sn.mag[t]), mag_err_sn=_num(sn.mag_err[t]))
    return d


def fit_summary(fit) -> dict:
    """The ``--json`` object (issue-specified keys; NaN written as null)."""
    from ..diagnostics import diagnostics_records
    timings = {k: round(v, 6) for k, v in fit.timings.items()}
    common = {"chi2": _num(fit.chi2), "dof": fit.dof, "convention": fit.settings.convention,
              "n_chi2_evaluations": fit.n_chi2_evaluations, "timings": timings,
              "dropped_exposures": fit.dropped_expnums,
              "per_exposure": diagnostics_records(fit)}
    if fit.shot_noise is not None:
        common["shot_noise"] = {"gain": fit.shot_noise.gain,
                                "iterations": fit.shot_noise.iterations}
    if fit.kind == "binary":
        return {"flux": _num(fit.flux), "flux_err": _num(fit.flux_err),
                "primary": _source_dict(fit, 0), "secondary": _source_dict(fit, 1),
                "chi2_single": _num(fit.chi2_single), "delta_chi2": _num(fit.delta_chi2),
                "separation_px": _num(fit.separation_px),
                "separation_err_px": _num(fit.separation_err_px),
                "separation_arcsec": _num(fit.separation_arcsec),
                "position_angle_deg": _num(fit.position_angle_deg),
                "position_angle_err_deg": _num(fit.position_angle_err_deg),
                "offsets": [_num(v) for v in fit.published_offsets], **common}
    return {**_source_dict(fit, 0), **common}



def text_summary(fit) -> str:
    lines = [f"{fit.manifest.name}: {fit.kind} fit, {fit.settings.convention} convention, "
             f"chi2 = {fit.chi2:.2f} / {fit.dof} dof"]
    names = ("primary", "secondary") if fit.kind == "binary" else ("target",)
    for t, (name, s) in enumerate(zip(names, fit.sources)):
        mag = (f"mag {s.mag:.4f} +- {s.mag_err:.4f}" if s.flux > 0
               else f"mag > {s.mag_limit_3sigma:.3f} (3 sigma)")
        pos = f"offset ({s.dx:+.3f}, {s.dy:+.3f}) px"
        if math.isfinite(s.dx_err):
            pos += f" +- ({s.dx_err:.3f}, {s.dy_err:.3f})"
        lines.append(f"  {name}: flux {s.flux:.2f} +- {s.flux_err:.2f} (ZP 30), {mag}, {pos}")
        if fit.shot_noise is not None:
            sn = fit.shot_noise
            lines.append(f"    with source shot noise (gain {sn.gain:g}): flux "
                         f"{sn.flux[t]:.2f} +- {sn.flux_err[t]:.2f}")
    if fit.kind == "binary":
        lines.append(f"  delta chi2 (single - binary) = {fit.delta_chi2:.2f}; separation "
                     f"{fit.separation_px:.3f} px = {fit.separation_arcsec:.3f} arcsec, "
                     f"PA {fit.position_angle_deg:.1f} deg")
    return "\n".join(lines)
