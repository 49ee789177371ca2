"""PSF phase study (docs/validation/psf_phase.rst): SMP flux bias against the target's sub-pixel
position when the PSF is a Piff model fitted to stars of a known PSF, for each
``--psf-normalization``.  Prints, per option, the largest |flux bias| over the phase cells
(mmag) and the pull statistics, for a target alone and for one blended with a galaxy and
two stars; ``--plot`` saves bias against phase, ``--json`` the numbers.

    python benchmarks/psf_phase.py --plot docs/psf-phase.png --json docs/psf-phase.json

Reads the Piff setup (model, interpolation, outliers, star stamps) from the DES sample's
Piff file of 2014lq28's detection ($SMP_DES_SAMPLE or ../shared/des-sample; built-in values,
the same, without it).  Most of the time goes into Piff's fits (one per exposure).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from smp_model.cli.arguments import Progress  # noqa: E402
from smp_model.files import check_writable  # noqa: E402
from smp_model.validation.psf_phase import (PhaseStudyConfig, default_setup, format_study,
                                            phase_figure, run_phase_study)


def main(argv=None) -> int:
    defaults = PhaseStudyConfig()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.add_argument("--exposures", type=int, default=defaults.n_exposures,
                   help=f"exposures of the simulated field ({defaults.n_exposures})")
    p.add_argument("--phases", type=int, default=defaults.n_phase,
                   help=f"phase cells per axis ({defaults.n_phase})")
    p.add_argument("--noise", type=int, default=defaults.n_noise,
                   help=f"noisy fits per phase cell ({defaults.n_noise})")
    p.add_argument("--stars", type=int, default=defaults.n_piff_stars,
                   help=f"stars per Piff fit ({defaults.n_piff_stars})")
    p.add_argument("--sample", default=os.environ.get("SMP_DES_SAMPLE")
                   or str(REPO.parent / "shared" / "des-sample"))
    p.add_argument("--plot", metavar="PATH", help="bias against phase (.png, .pdf, .svg)")
    p.add_argument("--json", metavar="PATH", help="the summary as JSON")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    for path in (args.plot, args.json):
        if path:
            check_writable(path, args.overwrite)
    config = dataclasses.replace(defaults, seed=args.seed, n_exposures=args.exposures,
                                 n_phase=args.phases, n_noise=args.noise,
                                 n_piff_stars=args.stars)
    start = time.perf_counter()
    setup = default_setup(args.sample)
    # The same field and Piff fits (the same seed) with and without the target's neighbours.
    studies = [run_phase_study(dataclasses.replace(config, neighbours=neighbours), setup,
                               progress=Progress(args.quiet))
               for neighbours in (False, True)]
    print("\n\n".join(format_study(study) for study in studies))
    print(f"\n({time.perf_counter() - start:.0f} s)")
    if args.plot:
        phase_figure(studies).savefig(args.plot, dpi=110)
    if args.json:
        summaries = {}
        for study in studies:
            summary = study.summary()
            summary["bias_mmag"] = {name: r.bias_mmag.round(4).tolist()
                                    for name, r in study.results.items()}
            summary["phases"] = config.phases.tolist()
            summaries[study.config.field] = summary
        Path(args.json).write_text(json.dumps(summaries, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
