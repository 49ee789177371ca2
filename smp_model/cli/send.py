"""``smp send``: send written outputs (tables, FITS images) to the tools on the running SAMP
hub (TOPCAT, DS9, Aladin; `smp_model.outputs.samp`)."""
from __future__ import annotations

import sys
from pathlib import Path

__all__ = ["EXIT_NO_HUB", "register", "run"]

EXIT_NO_HUB = 1   # not a usage error: the same command works once a hub runs


def register(sub) -> None:
    from ..outputs.samp import SAMP_TIMEOUT_S, SEND_TARGETS
    p = sub.add_parser(
        "send", help="send tables and FITS images to TOPCAT, DS9 or Aladin over SAMP",
        description="Send files to the clients of the running SAMP hub: tables (ECSV, "
                    "FITS tables, VOTable, CSV) as VOTables with their units "
                    "(table.load.votable), FITS images (panels, cubes) by their path "
                    "(image.load.fits). Without a hub, exits with status 1 and one line "
                    f"within {SAMP_TIMEOUT_S:g} s.")
    p.add_argument("files", nargs="+", metavar="FILE", help="tables or FITS images")
    p.add_argument("--to", default="all", type=str.lower,
                   choices=[name.split()[0].lower() for name in SEND_TARGETS],
                   help="the receiving tool (default: every client that accepts the file)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..errors import SMPError
    from ..files import read_input_table
    from ..outputs.samp import SEND_TARGETS, SampError, SampLink, table_file_kind
    target = {name.split()[0].lower(): tool for name, tool in SEND_TARGETS.items()}[args.to]
    kinds = [(Path(f), table_file_kind(f)) for f in args.files]   # bad paths first
    tables = {path: read_input_table(path, SMPError, "table") for path, kind in kinds
              if kind == "table"}
    try:
        with SampLink(name="smp send") as link:
            for path, kind in kinds:
                if kind == "table":
                    link.send_table(tables[path], path.name, target)
                else:
                    link.send_image(path, path.name, target)
                print(f"smp: sent {path} ({kind})", file=sys.stderr)
    except SampError as exc:
        print(f"smp: error: send: {exc}", file=sys.stderr)
        return EXIT_NO_HUB
    return 0
