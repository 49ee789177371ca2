"""``smp validate``: injection-recovery validation of fluxes, errors and binary positions
(`smp_model.validation.injection`)."""
from __future__ import annotations

import json
import math
import sys

from .arguments import Progress, number

__all__ = ["format_stress_summary", "format_summary", "register", "run"]


def register(sub) -> None:
    p = sub.add_parser(
        "validate", help="injection-recovery validation of fluxes and errors",
        description="Inject point sources of known flux into simulated detections (S/N "
                    "5-200, isolated and on a galaxy), optionally binaries (--binary) and "
                    "real DES stamps (--real SAMPLE), fit them with the full scene model "
                    "and report flux bias (in sigma), pull scatter and 1-sigma coverage.")
    p.add_argument("--n", type=number(1, integer=True), default=200, metavar="N",
                   help="injections per experiment (200)")
    p.add_argument("--binary", action="store_true",
                   help="also binary injections: N pairs 2-4 px apart, 2N 1-2 px apart")
    p.add_argument("--real", metavar="PATH",
                   help="DES sample folder (with */detection.toml) for real-data injections")
    p.add_argument("--psfex", metavar="PSF",
                   help="draw and fit the simulated detections with this PSFEx model (*.psf) "
                        "and the WCS of --header instead of analytic PSFs")
    p.add_argument("--header", metavar="HDR",
                   help="FITS file whose primary header holds the WCS of the --psfex CCD")
    p.add_argument("--delta-chi2", type=number(0, integer=True), metavar="N", dest="n_delta_chi2",
                   help="single injections also fitted as binaries for the delta-chi2 "
                        "distribution (default: all)")
    p.add_argument("--stress", type=number(1, integer=True), metavar="N",
                   help="instead: the stress run, N simulated detections with a survey's "
                        "variety (2-6 exposures, poor seeing, galaxies, stars, masks, a "
                        "masked exposure), 10 injections each: how many fail or are "
                        "flagged, and the flux pulls with and without the remedy for "
                        "ill-conditioned scenes")
    p.add_argument("--seed", type=number(0, integer=True), default=0, help="random seed (0)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    p.add_argument("--plot", metavar="PATH", help="pull histograms and recovered-vs-true "
                                                  "plots (.png, .pdf, .svg)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --plot file")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(func=run)


def run(args) -> int:
    if args.stress:
        return _run_stress(args)
    from ..files import check_writable
    from ..validation.injection import run_validation, save_validation_figure
    if args.plot:
        check_writable(args.plot, args.overwrite)   # fail before the long run
    builder = _field_builder(args)
    if builder is None:
        return 2
    report = run_validation(args.n, seed=args.seed, binary=args.binary, real=args.real,
                            n_delta_chi2=args.n_delta_chi2, progress=Progress(args.quiet),
                            builder=builder)
    summary = report.summary()
    if args.psfex:
        summary["psf"] = {"format": "psfex", "path": args.psfex, "wcs_header": args.header}
    if args.plot:
        save_validation_figure(report, args.plot, overwrite=args.overwrite)
    return _print_summary(summary, args.json, format_summary)


def _run_stress(args) -> int:
    from ..validation.stress import run_stress
    others = [name for name, given in (("--binary", args.binary), ("--real", args.real),
                                       ("--plot", args.plot), ("--psfex", args.psfex),
                                       ("--header", args.header),
                                       ("--delta-chi2", args.n_delta_chi2 is not None))
              if given]
    if others:
        raise ValueError(f"--stress runs alone: drop {', '.join(others)}")
    summary = run_stress(args.stress, seed=args.seed, progress=Progress(args.quiet)).summary()
    return _print_summary(summary, args.json, format_stress_summary)


def _print_summary(summary: dict, as_json: bool, formatter) -> int:
    """Print ``summary`` as JSON or as ``formatter`` writes it; the exit code 0."""
    if as_json:
        json.dump(_finite(summary), sys.stdout, indent=1)
        print()
    else:
        print(formatter(summary))
    return 0


def _field_builder(args):
    """How the simulated fields are made: analytic PSFs, or the --psfex model (read once
    here, so that a bad file stops the run at once); None after a usage error."""
    from ..simulation.field import build_field
    if args.psfex is None and args.header is None:
        return build_field
    if args.psfex is None or args.header is None:
        print("smp: error: validate: --psfex and --header go together", file=sys.stderr)
        return None
    from functools import partial

    from ..psf.models import PSFExPSF
    from ..simulation.psfex import build_psfex_field
    PSFExPSF.read(args.psfex, args.header)
    return partial(build_psfex_field, args.psfex, args.header)


def format_stress_summary(summary: dict) -> str:
    """Human-readable summary of `StressReport.summary`."""
    def line(name: str, s: dict) -> str:
        return (f"  {name:<34} n={s['n']:5d}  bias {s['bias_sigma']:+.3f} sigma  pull std "
                f"{s['pull_std']:.3f}  1-sigma coverage {100 * s['coverage_1sigma']:.1f} %")

    flagged = ", ".join(f"{k} {v}" for k, v in summary["flagged"].items()) or "none"
    chi2 = summary["reduced_chi2"]
    out = [f"stress run: {summary['detections']} simulated detections, "
           f"{summary['failed']} failed, {summary['injections']} injections fitted",
           *(f"  failed: {text}" for text in summary["failures"]),
           f"  remedy engaged in {summary['remedy_engaged']} detection(s): "
           f"{summary['grid_sources_dropped']} grid source(s) dropped, "
           f"{summary['scene_modes_cut']} scene direction(s) cut",
           f"  flagged injections: {flagged}; "
           f"{summary['flagged_without_defect']} flagged where no defect was placed, "
           f"{summary['defect_not_flagged']} with a defect not flagged",
           f"  chi2/dof: median {chi2['median']:.3f}, 1-99 % {chi2['p01']:.3f}-"
           f"{chi2['p99']:.3f}",
           "target-flux pulls:"]
    names = {"all": "all", "remedy_not_engaged": "remedy not engaged",
             "remedy_engaged": "remedy engaged",
             "remedy_engaged_solved_without_it": "the same, solved without it"}
    out += [line(names[k], v) for k, v in summary["pulls"].items() if v["n"]]
    shift = summary["shift_sigma_without_remedy"]
    if summary["remedy_engaged"]:
        out.append(f"  change of a flux by the remedy: rms {shift['rms']:.2g} sigma, largest "
                   f"{shift['max']:.2g} sigma (target share in the cut directions at most "
                   f"{100 * summary['max_target_cut_share']:.2g} %)")
    return "\n".join(out)


def _finite(value):
    """JSON has no NaN: undefined statistics become null."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def format_summary(summary: dict) -> str:
    """Human-readable summary of `ValidationReport.summary`."""
    def line(name: str, s: dict) -> str:
        return (f"  {name:<24} n={s['n']:4d}  bias {s['bias_sigma']:+.3f} sigma  "
                f"pull std {s['pull_std']:.3f}  1-sigma coverage "
                f"{100 * s['coverage_1sigma']:.1f} %")

    psf = summary.get("psf")
    drawn = f", PSFEx model {psf['path']}" if psf else ""
    out = [f"single sources (simulated{drawn}):", line("all", summary["single"])]
    out += [line(f"S/N {k}", v) for k, v in summary["single"]["by_snr"].items()]
    out += [line(k, v) for k, v in summary["single"]["by_blending"].items()]
    d = summary["single"]["delta_chi2"]
    if d.get("n"):
        rates = ", ".join(f"> {t}: {100 * f:.1f} %" for t, f in d["fraction_above"].items())
        out.append(f"  delta chi2 (single fitted as binary, n={d['n']}): median "
                   f"{d['median']:.2f}, 90 % {d['p90']:.2f}; {rates}")
    b = summary.get("binary")
    if b is not None:
        out.append("binaries (simulated, fluxes of both components):")
        sections = [("separation 2-4 px", b)]
        if "close_pairs" in b:
            sections.append(("separation 1-2 px", b["close_pairs"]))
        for name, s in sections:
            out.append(line(name, s))
            out.append(line("  errors incl. positions", s["with_position_errors"]))
            out.append(line("  total flux of the pair", s["total_flux"]))
            out.append(line("  total flux, debiased", s["total_flux_debiased"]))
            rec = s["recommended"]
            out.append(line("  resolved, flux_err_total", rec))
            out.append(f"  {'':<24} unresolved (quote the total): "
                       f"{100 * rec['unresolved_fraction']:.0f} % of pairs; debiased "
                       f"separation of resolved pairs: bias "
                       f"{rec['separation']['bias_sigma']:+.3f} sigma, pull std "
                       f"{rec['separation']['pull_std']:.3f} (fitted: bias "
                       f"{rec['separation_fitted']['bias_sigma']:+.3f} sigma)")
            out.append(f"  {'':<24} fitted separation of all {s['n_pairs']} pairs (unresolved "
                       f"included): pull std {s['separation_pull_std']:.3f}, bias "
                       f"{s['separation_bias_sigma']:+.3f} sigma")
    if summary.get("real") is not None:
        out.append("real DES stamps (Piff PSF injections):")
        out.append(line("all", summary["real"]))
        out += [line(k, v) for k, v in summary["real"]["by_detection"].items()]
    return "\n".join(out)
