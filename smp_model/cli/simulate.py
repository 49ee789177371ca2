"""``smp simulate``: write a simulated detection (manifest, stamps, PSFs, zeropoints,
truth) in the on-disk form of the DES sample."""
from __future__ import annotations

import argparse
import sys

from .arguments import number

__all__ = ["register", "run"]


def register(sub) -> None:
    p = sub.add_parser(
        "simulate", help="write a simulated detection with known truth",
        description="Simulate a moving-object detection (DES-like pixels, seeing, WCS, noise "
                    "and masks; a static scene of stars and a galaxy) and write it as "
                    "OUTDIR/detection.toml with stamps, PSFs, zeropoints and truth.json. "
                    "Fluxes are counts on zeropoint 30. Prints the manifest path.")
    p.add_argument("outdir", nargs="?",
                   help="output folder (must be empty or new unless --overwrite)")
    p.add_argument("--survey", metavar="DIR",
                   help="instead, write a small simulated survey (4 objects, 52 detections "
                        "over four years: a rotational light curve, a binary, a flagged "
                        "exposure) and its batch list DIR/detections.ecsv")
    p.add_argument("--seed", type=number(0, integer=True), default=0, help="random seed (0)")
    p.add_argument("--exposures", type=number(1, integer=True), default=6, metavar="N",
                   help="number of exposures, the detection among them (6)")
    p.add_argument("--binary", action="store_true", help="a binary target")
    p.add_argument("--separation", type=number(0), default=2.8, metavar="PX",
                   help="binary separation, detection-exposure pixels (2.8)")
    p.add_argument("--flux", type=number(), default=2000.0, metavar="F",
                   help="target (binary: primary) flux, zeropoint 30 (2000)")
    p.add_argument("--flux-ratio", type=number(0), default=0.7, metavar="R",
                   help="binary secondary/primary flux ratio (0.7)")
    p.add_argument("--galaxy", action=argparse.BooleanOptionalAction, default=True,
                   help="a Sersic galaxy beside the target (default: yes)")
    p.add_argument("--stars", type=number(0, integer=True), default=2, metavar="N", help="field stars (2)")
    p.add_argument("--stamp-size", type=number(8, 1000, integer=True), default=30, metavar="PX", help="stamp size (30)")
    p.add_argument("--name", help="detection name (default sim<seed>)")
    p.add_argument("--gain", type=number(0, low_open=True), metavar="E_PER_UNIT",
                   help="add source Poisson noise with this gain (electrons per SCI unit)")
    p.add_argument("--ccd-images", action="store_true",
                   help="also write full CCD images (images/*.fits.fz, DECam-layout WCS) and "
                   "a survey exposure table (exposures.ecsv) with decoy pointings, for "
                   "smp discover and smp cutout")
    p.add_argument("--psfex", metavar="PSF",
                   help="draw the stamps with this PSFEx model (*.psf) and the WCS of "
                        "--header (the detection exposure is that CCD; the others are "
                        "turned and shifted copies of its WCS); the manifest names the file")
    p.add_argument("--header", metavar="HDR",
                   help="FITS file whose primary header holds the WCS of the --psfex CCD")
    p.add_argument("--overwrite", action="store_true",
                   help="write into a non-empty OUTDIR, replacing files of the same names")
    p.set_defaults(func=run)


def run(args) -> int:
    if args.survey:
        return _run_survey(args)
    if not args.outdir:
        print("smp: error: simulate needs OUTDIR (or --survey DIR)", file=sys.stderr)
        return 2
    options = dict(seed=args.seed, n_exposures=args.exposures, binary=args.binary,
                   separation_px=args.separation, flux=args.flux, flux_ratio=args.flux_ratio,
                   galaxy=args.galaxy, n_stars=args.stars, stamp_size=args.stamp_size,
                   name=args.name, shot_noise_gain=args.gain)
    if (args.psfex is None) != (args.header is None):
        print("smp: error: simulate: --psfex and --header go together", file=sys.stderr)
        return 2
    if args.psfex is not None:
        if args.ccd_images:
            print("smp: error: simulate: --ccd-images is not available with --psfex",
                  file=sys.stderr)
            return 2
        from ..simulation.psfex import simulate_psfex_detection
        truth = simulate_psfex_detection(args.outdir, args.psfex, args.header,
                                         overwrite=args.overwrite, **options)
    else:
        from ..simulation.detection import simulate_detection
        truth = simulate_detection(args.outdir, overwrite=args.overwrite,
                                   ccd_images=args.ccd_images, **options)
    print(truth.manifest_path)
    return 0


def _run_survey(args) -> int:
    from pathlib import Path

    from ..simulation.survey import simulate_survey

    def progress(done: int, total: int) -> None:
        print(f"smp: simulated {done}/{total} detections", end="\r", file=sys.stderr)

    truth = simulate_survey(args.survey, seed=args.seed, overwrite=args.overwrite,
                            progress=progress)
    print(file=sys.stderr)
    listing = Path(args.survey).absolute() / "detections.ecsv"
    print(listing)
    print(f"smp: {len(truth)} detections; next: smp batch {listing} --out "
          f"{listing.with_name('fluxes.ecsv')} --binary-search-if 25", file=sys.stderr)
    return 0
