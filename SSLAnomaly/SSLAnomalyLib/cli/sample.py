"""`sslanomaly sample`: the demo's sample radiograph (real data where present, else synthetic)."""

from __future__ import annotations

from SSLAnomalyLib.cli.options import output_folder


def add_parser(sub) -> None:
    s = sub.add_parser("sample", help="put a sample radiograph in a folder (real data if present, else synthetic)")
    s.add_argument("--out", required=True, type=output_folder, help="folder to put the sample radiograph in")
    s.add_argument("--data", help="folder of radiographs to take the sample from")
    s.set_defaults(func=cmd_sample)


def cmd_sample(args) -> int:
    from SSLAnomalyLib.core.reading.sample import sample_inputs

    for path in sample_inputs(args.out, args.data):
        print(path)
    return 0
