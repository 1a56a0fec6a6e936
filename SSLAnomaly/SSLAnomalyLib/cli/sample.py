"""`sslanomaly sample`: the demo's sample radiograph (real data where present, else synthetic)."""

from __future__ import annotations

from SSLAnomalyLib.cli.options import output_folder


def add_parser(sub) -> None:
    s = sub.add_parser("sample", help="print the paths of sample radiographs for a first run: real ones used in place "
                                      "(--data, else the shared data), else a synthetic one written into --out")
    s.add_argument("--out", required=True, type=output_folder,
                   help="folder the synthetic radiograph is written into (where no real one is found)")
    s.add_argument("--data", help="folder of radiographs to take the sample from (a normal and a pneumonia where it "
                                  "has normal/ and pneumonia/, else its first two images)")
    s.set_defaults(func=cmd_sample)


def cmd_sample(args) -> int:
    from SSLAnomalyLib.core.reading.sample import sample_inputs

    for path in sample_inputs(args.out, args.data):
        print(path)
    return 0
