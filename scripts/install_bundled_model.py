"""Install a measured run as a bundled model: copy its weights into the registry's folder for NAME,
write the population (from Resources/Models/models.json) and the figures scripts/measure_model.sh
measured into its manifest and card, and verify the result. The tensors are written back byte for byte.

Usage: .venv/bin/python scripts/install_bundled_model.py NAME RUN [OTHER_SEED_RUN ...]
  e.g. scripts/install_bundled_model.py adult runs/round2/adult/adult-s0 runs/round2/adult/adult-s1
"""

import json
import sys
from pathlib import Path

from SSLAnomalyLib.core.model_files import model_folder, registry
from SSLAnomalyLib.core.model_files.model_card import model_card

MEASUREMENTS = ("dev", "shifted", "localisation", "nih_boxes")


def measured(run: Path) -> dict:
    return {name: json.loads((run / f"{name}.json").read_text()) for name in MEASUREMENTS
            if (run / f"{name}.json").exists()}


def install(name: str, run: str, other_seed_runs=(), folder=None) -> Path:
    """Install `run` as bundled model `name` (into `folder`, default the registry's folder for it)."""
    entry = registry.bundled(name)
    if entry is None:
        raise SystemExit(f"error: {name} is not a bundled model name in {registry.REGISTRY}")
    run = Path(run)
    loaded = model_folder.load(run)  # verifies the run before anything is written
    folder = Path(folder) if folder is not None else entry.folder
    others = []
    for other in map(Path, other_seed_runs):
        training, figures = model_folder.load(other).manifest.section("training"), measured(other)
        others.append({"run": other.name, "seed": training["seed"], "auroc": figures["dev"]["auroc"],
                       "ap": figures["dev"]["ap"], "pointing_game": figures["localisation"]["pointing_game"],
                       "command": training["command"]})
    manifest = loaded.manifest.replaced(
        files=None, format_version=None, population=entry.population,
        # the data of earlier stages that the run's own folders do not name (model card)
        data_terms=list(entry.data_terms) if entry.data_terms else loaded.manifest.document.get("data_terms"),
        measured=dict(measured(run), other_seeds=others))
    return model_folder.save(folder, loaded.encoder_state, loaded.arrays, manifest, model_card(manifest), overwrite=True,
                             decoder_state=loaded.decoder_state)

def main(name: str, run: str, *other_seed_runs: str) -> int:
    print(f"installed {run} as the bundled '{name}' model in {install(name, run, other_seed_runs)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
