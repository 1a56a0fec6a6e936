"""What the command line says about training without importing the trainer (so that `detect`
never loads it): the objective names, the default pretext and the learning rates. objectives.py
and trainer.py take their values from here."""

OBJECTIVE_NAMES = ("anatpaste", "opacity", "contrastive", "mae", "relpos", "jigsaw")
DEFAULT_PRETEXT = "anatpaste"  # the bundled models' recipe (docs/model.md)
LR = 0.03
FINE_TUNE_LR = 0.003  # a tenth of the from-scratch rate when starting from a trained encoder
