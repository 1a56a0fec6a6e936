"""`sslanomaly calibrate`: percentiles, score standardisation and thresholds re-derived from a site's
own normals (encoder unchanged) into a new model folder."""

from __future__ import annotations

import sys

from SSLAnomalyLib.cli.options import add_model, add_quiet, fraction, model_out, report_model
from SSLAnomalyLib.core.model.calibration import DEFAULT_FPR


def add_parser(sub) -> None:
    c = sub.add_parser("calibrate", help="re-derive percentiles, score standardisation and thresholds from a "
                                         "site's own normals (encoder unchanged) into a new model folder")
    add_model(c)
    c.add_argument("--normals", required=True, nargs="+", metavar="DIR",
                   help="folder(s) of the site's normal radiographs, new to the model: those its reference was "
                        "fitted on (as train records them) are set aside, each named, since they score lower than "
                        "new normals; too few left is refused")
    c.add_argument("--out", required=True, type=model_out, help="new model folder to write")
    c.add_argument("--overwrite", action="store_true", help="replace a model already in --out (never a folder of other files)")
    c.add_argument("--fpr", type=fraction, default=DEFAULT_FPR,
                   help=f"false-positive rate on normals for the thresholds (default {DEFAULT_FPR:g})")
    add_quiet(c)
    c.set_defaults(func=cmd_calibrate)


def cmd_calibrate(args) -> int:
    from SSLAnomalyLib.training.site_calibration import calibrate_model

    folder = calibrate_model(args.model, args.normals, args.out, fpr=args.fpr, progress=not args.quiet,
                             overwrite=args.overwrite)
    report_model(folder, "calibrated model")
    report_reference_check(folder)
    return 0


def report_reference_check(folder) -> None:
    """Say on stderr how many of the normals given were among those the model's reference was fitted
    on (each is named above), or that the model keeps no record to check them against."""
    from SSLAnomalyLib.core.model_files import model_folder

    site = model_folder.load(folder).manifest.section("site_calibration")
    found = site.get("n_in_reference")
    if found is None:
        print(f"note: model {site['from_model']} keeps no record of the normals its reference was fitted on (a "
              "bundled model, one trained before this version or from a normals pack, or a merge): any of them "
              "among these normals could not be set aside, and would make the thresholds too low for new normals",
              file=sys.stderr)
    elif found:
        print(f"warning: {found} of the normals given are among those the reference of model {site['from_model']} "
              f"was fitted on and were set aside (named above); the thresholds are set on the other "
              f"{site['n_normals']}", file=sys.stderr)
