"""`sslanomaly reference-stats`: a site's sums of its normals' features under a model's encoder, to
merge with other sites' into one reference (training/federated.py); no image leaves the site."""

from __future__ import annotations

from SSLAnomalyLib.cli.options import add_device, add_model, add_quiet, warn_left_out


def add_parser(sub) -> None:
    r = sub.add_parser("reference-stats", help="write this site's normal-reference statistics (sums, no images) "
                                               "for `sslanomaly merge`")
    add_model(r)
    r.add_argument("--normals", required=True, nargs="+", metavar="DIR", help="folder(s) of the site's normal radiographs")
    r.add_argument("--out", required=True, help="statistics file to write (safetensors with a JSON header)")
    r.add_argument("--means", metavar="MERGED_MODEL", default=None,
                   help="second round: take the patch residuals against this first-round merged model's means, "
                        "which makes the merge exact")
    add_device(r)
    add_quiet(r)
    r.set_defaults(func=cmd_reference_stats)


def cmd_reference_stats(args) -> int:
    from SSLAnomalyLib.core.model.device import select_device
    from SSLAnomalyLib.training.federated import check_target, site_stats

    check_target(args.out)  # before the normals are read
    site = site_stats(args.model, args.normals, args.means, select_device(args.device), progress=not args.quiet)
    path = site.save(args.out)
    warn_left_out(site.unread)  # as train and calibrate name them: the site sees which normals are not in its sums
    print(f"statistics of {site.stats.n_images} normals under model {site.model_id} written to {path} "
          f"(residuals against {'the means of ' + site.means_from if args.means else 'this site' + chr(39) + 's own means'})")
    return 0
