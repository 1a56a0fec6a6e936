"""`sslanomaly detect | evaluate | train | train-anatomy | calibrate | reference-stats | merge | models | sample`: a thin command line
over the core, one module per subcommand (the benchmark is developer tooling: `sslanomaly-bench`)."""

from __future__ import annotations

import argparse
import sys

from SSLAnomalyLib.cli.options import UsageError
from SSLAnomalyLib.cli.termination import TERMINATED, Terminated, output_closed, signals_held, signals_raise
from SSLAnomalyLib.core.files.errors import PathError
from SSLAnomalyLib.core.files.json_text import visible


def parser() -> argparse.ArgumentParser:
    # imported here, not above: they import torch (seconds), during which main holds Ctrl-C and SIGTERM
    from SSLAnomalyLib.cli import calibrate, detect, evaluate, merge, models, reference_stats, sample, train

    p = argparse.ArgumentParser(prog="sslanomaly", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    detect.add_parser(sub)
    evaluate.add_parser(sub)
    train.add_parsers(sub)
    calibrate.add_parser(sub)
    reference_stats.add_parser(sub)
    merge.add_parser(sub)
    models.add_parser(sub)
    sample.add_parser(sub)
    return p


def main(argv=None) -> int:
    command = None  # until parsed: a command stopped as it starts has nothing to resume
    try:
        with signals_raise():  # `finally` blocks run on SIGTERM too: no feature cache of GBs left in the temp folder
            with signals_held():  # else Ctrl-C mid-import ends in a traceback (exit -2), SIGTERM in a silent -15
                p = parser()
            args = p.parse_args(argv)
            command = args.command
            if getattr(args, "device", None) == "cuda":
                import torch

                if not torch.cuda.is_available():
                    p.error("--device cuda: no CUDA device is available on this machine (use --device auto or cpu)")
            status = args.func(args)
            sys.stdout.flush()  # a reader gone (`| head`) is met here, not in the flush at exit
            return status
    except BrokenPipeError:  # an OSError, but the reader's doing: no error of this command's
        return output_closed()
    except UsageError as e:  # exits 2, as argparse's refusals do
        print(f"error: {e}", file=sys.stderr)
        raise
    except PathError as e:  # a model folder, an input, a review: each names itself and the reason, a
        # name that is not UTF-8 as the JSON and the card write it (caf\xe9.png), not as a lone surrogate
        print(f"error: {visible(str(e))}", file=sys.stderr)
        return 2
    except OSError as e:  # e.g. an output folder that cannot be written
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:  # only detect has --resume: evaluate or calibrate is simply run again
        resume = "; completed results are kept (rerun with --resume to finish)" if command == "detect" else ""
        print(f"{'terminated (SIGTERM)' if isinstance(e, Terminated) else 'interrupted'}{resume}", file=sys.stderr)
        return TERMINATED if isinstance(e, Terminated) else 130
