"""`sslanomaly merge`: sites' reference statistics merged into a verified model folder whose normal
reference is the fit on all their normals (exact after the second round: training/federated.py)."""

from __future__ import annotations

from SSLAnomalyLib.cli.options import add_model, model_out


def add_parser(sub) -> None:
    m = sub.add_parser("merge", help="merge sites' reference statistics into a model folder (the reference of all "
                                     "their normals)")
    add_model(m)
    m.add_argument("--stats", required=True, nargs="+", metavar="STATS", help="statistics files of `reference-stats`")
    m.add_argument("--out", required=True, type=model_out, help="model folder to write")
    m.add_argument("--overwrite", action="store_true", help="replace a model already in --out (never a folder of other files)")
    m.set_defaults(func=cmd_merge)


def cmd_merge(args) -> int:
    from SSLAnomalyLib.core.model_files import model_folder
    from SSLAnomalyLib.training.federated import merge

    folder = merge(args.model, args.stats, args.out, overwrite=args.overwrite)
    f = model_folder.load(folder).manifest.section("federated")
    print(f"merged model written to {folder}: the reference of {f['n_normals']} normals from {f['n_sites']} site(s)")
    if not f["exact"]:
        print(f"round 1 of 2: the patch covariance is approximate. For the exact fit, each site runs "
              f"`sslanomaly reference-stats --model {args.model} --means {folder} --normals ... --out ...` "
              "and the new statistics are merged again.")
    print("thresholds: calibrate at each site on its own normals (`sslanomaly calibrate --model "
          f"{folder} --normals ... --out ...`)")
    return 0
