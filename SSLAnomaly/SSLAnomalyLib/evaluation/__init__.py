"""Measuring a model on labelled folders: AUROC/AP, localisation against boxes, and seeded acquisition perturbations."""
