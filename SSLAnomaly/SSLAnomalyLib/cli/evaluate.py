"""`sslanomaly evaluate`: AUROC and flagged shares on labelled folders, localisation against boxes, or
synthetic abnormalities (phantoms) drawn on normals."""

from __future__ import annotations

import sys
from pathlib import Path

from SSLAnomalyLib.cli.options import (UsageError, add_device, add_model, add_quiet, command_line, count,
                                       load_detector)
from SSLAnomalyLib.core.files.atomic import atomic_write_text
from SSLAnomalyLib.core.files.errors import writing
from SSLAnomalyLib.core.files.json_text import dumps


def add_parser(sub) -> None:
    e = sub.add_parser("evaluate", help="AUROC/AP on labelled folders, or localisation against boxes")
    add_model(e)
    e.add_argument("--normal", help="folder of normal images")
    e.add_argument("--abnormal", help="folder of abnormal images")
    e.add_argument("--boxes", help="CSV with columns image,x0,y0,x1,y1,label (pixel coordinates of the image as "
                                   "viewers show it: upright as its EXIF orientation says, at full size)")
    e.add_argument("--images", help="folder of the images named in --boxes")
    e.add_argument("--json", help="write the figures to this JSON file")
    e.add_argument("--scores-csv", metavar="CSV", help="also write every image's score (and each perturbed copy's) to this CSV")
    e.add_argument("--perturb", metavar="FAMILIES",
                   help="also score both folders under seeded acquisition perturbations: 'all' or a comma-separated "
                        "list of fov, translate, rotate, gamma, contrast, noise, blur, lowres, jpeg, markers, combined, "
                        "zoom_gamma; each reports AUROC, AP and the FPR/TPR at the model's threshold")
    e.add_argument("--phantoms", metavar="KINDS",
                   help="draw seeded synthetic abnormalities on the --normal images instead of reading --abnormal: "
                        "'all' or a comma-separated list of whiteout, effusion, consolidation, mass, nodule, "
                        "pneumothorax, cardiomegaly; reports per kind and size the share flagged, AUROC against the "
                        "unaltered normals and the pointing game on the phantom's region")
    e.add_argument("--seed", type=count, default=0, help="seed of the perturbations and phantoms")
    add_device(e)
    add_quiet(e)
    e.set_defaults(func=cmd_evaluate)


def cmd_evaluate(args) -> int:
    """The figures as JSON on stdout (and --json), each image left out named on stderr; exit 0 all the
    same, since the figures are there (only detect's exit status counts failed inputs)."""
    from SSLAnomalyLib.core.results.outputs import output_file, shown
    from SSLAnomalyLib.evaluation.evaluate import evaluate_boxes, evaluate_images
    from SSLAnomalyLib.evaluation.perturbations import parse_families
    from SSLAnomalyLib.evaluation.phantom_evaluation import evaluate_phantoms
    from SSLAnomalyLib.evaluation.phantoms import parse_kinds

    check_box_options(args)
    if args.phantoms is not None:  # an empty list is named as such, not taken for no --phantoms
        try:
            kinds = parse_kinds(args.phantoms)
        except ValueError as e:
            raise UsageError(f"--phantoms: {e}") from None
        if not args.normal or args.abnormal or args.perturb is not None:
            raise UsageError("--phantoms needs --normal DIR, and draws its abnormal images itself "
                             "(no --abnormal, no --perturb)")
    outputs = [output_file(f) for f in (args.json, args.scores_csv) if f is not None]
    if len(outputs) == 2 and outputs[0].resolve() == outputs[1].resolve():
        raise UsageError("--json and --scores-csv name the same file: the figures would overwrite the scores")
    refuse_images_as_outputs(args, outputs)
    detector = load_detector(args)
    if args.boxes is not None:
        result = evaluate_boxes(detector, args.boxes, args.images, progress=not args.quiet)
    elif args.phantoms is not None:
        result = evaluate_phantoms(detector, args.normal, kinds, seed=args.seed, progress=not args.quiet,
                                   scores_csv=args.scores_csv)
    else:
        if not (args.normal and args.abnormal):
            raise UsageError("evaluate needs --normal DIR and --abnormal DIR (or --boxes CSV --images DIR)")
        try:
            families = parse_families(args.perturb) if args.perturb is not None else []
        except ValueError as e:
            raise UsageError(f"--perturb: {e}") from None
        result = evaluate_images(detector, args.normal, args.abnormal, progress=not args.quiet,
                                 scores_csv=args.scores_csv, perturb=families, seed=args.seed)
    for error in result["errors"]:  # each image left out, with its reason, as detect names its failures
        print(f"error: {shown(error)}", file=sys.stderr)
    result["command"] = command_line()
    text = dumps(result, indent=1, allow_nan=False)
    if args.json:
        with writing(args.json):
            atomic_write_text(Path(args.json), text)
    print(text)
    return 0


def check_box_options(args) -> None:
    """Refuse, before a model is loaded, what the chosen measurement does not read: --boxes measures
    localisation on --images alone, and --images serves only --boxes. Such an option (a --scores-csv
    never written, a --perturb or --normal never scored) was silently dropped, leaving the user to take
    one measurement for another. A --json naming the box file was written over it, losing the boxes."""
    if args.boxes is not None:
        if not args.images:
            raise UsageError("--boxes needs --images DIR")
        unread = [name for name, value in (("--normal", args.normal), ("--abnormal", args.abnormal),
                                           ("--perturb", args.perturb), ("--phantoms", args.phantoms),
                                           ("--scores-csv", args.scores_csv)) if value is not None]
        if unread:
            raise UsageError(f"--boxes measures localisation on --images alone and does not read {', '.join(unread)}: "
                             "run evaluate once with --boxes and once without")
        if args.json is not None and Path(args.json).resolve() == Path(args.boxes).resolve():
            raise UsageError("--json names the --boxes file: the figures would overwrite the boxes")
    elif args.images is not None:
        raise UsageError("--images names the folder of the images in --boxes CSV, and there is no --boxes "
                         "(to score folders, give --normal DIR and --abnormal DIR)")


def refuse_images_as_outputs(args, outputs) -> None:
    """Refuse a --json or --scores-csv named like an image inside a folder evaluate reads: one naming an
    input radiograph was written over it once it was scored, and a new one would be read as an image
    by the next run."""
    from SSLAnomalyLib.core.reading.images import is_supported

    folders = [Path(f).resolve() for f in (args.normal, args.abnormal, args.images) if f]
    for out in outputs:
        target = out.resolve()
        if any(folder in target.parents for folder in folders) and is_supported(target):
            raise UsageError(f"{out} is named like an image in a folder evaluate reads: the figures would be "
                             "written over it, or read as an image by the next run; name a .json or .csv file")
