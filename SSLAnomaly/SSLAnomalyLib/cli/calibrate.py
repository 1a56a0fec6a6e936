"""`sslanomaly calibrate`: percentiles, score standardisation and thresholds re-derived from a site's
own normals (encoder unchanged) into a new model folder."""

from __future__ import annotations

from SSLAnomalyLib.cli.options import add_model, add_quiet, fraction, model_out, report_model
from SSLAnomalyLib.core.model.calibration import DEFAULT_FPR


def add_parser(sub) -> None:
    c = sub.add_parser("calibrate", help="re-derive percentiles, score standardisation and thresholds from a "
                                         "site's own normals (encoder unchanged) into a new model folder")
    add_model(c)
    c.add_argument("--normals", required=True, nargs="+", metavar="DIR", help="folder(s) of the site's normal radiographs")
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
    return 0
