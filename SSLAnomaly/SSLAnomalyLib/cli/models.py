"""`sslanomaly models`: the bundled models with their population, input, thresholds and measured figures."""

from __future__ import annotations

from SSLAnomalyLib.core.model_files.model_folder import ModelError


def add_parser(sub) -> None:
    m = sub.add_parser("models", help="list the bundled models (name, population, input, measured figures)")
    m.set_defaults(func=cmd_models)


def cmd_models(args) -> int:
    """The bundled models: name, population, input, measured figures and card."""
    from SSLAnomalyLib.core.model_files import model_folder, registry
    from SSLAnomalyLib.core.model_files.manifest import ANOMALY

    default = registry.default_name()
    for m in registry.bundled_models():
        try:  # an entry naming the lung network's folder is unusable, not a traceback on its missing encoder
            manifest = model_folder.load(m.folder, kind=ANOMALY).manifest
        except ModelError as e:
            print(f"{m.name}: unusable ({e.reason})")
            continue
        size, calibration = manifest.encoder.input_size, manifest.calibration
        figures = "".join(f"\n    {name}: {text}" for name, text in measured_lines(
            manifest.section("measured"), manifest.section("data").get("calibration_normals", "")))
        print(f"{m.name}{' (default)' if m.name == default else ''}: {m.population.label} - {m.description}\n"
              f"  model id {manifest.model_id}, input {size}x{size} px, "
              f"threshold {calibration.threshold:.3f} set for {100 * calibration.false_positive_rate:g} % false positives\n"
              f"  {calibration.text()}\n"
              f"  measured:{figures or ' not measured'}\n  card: {m.folder / model_folder.CARD}")
    return 0


def measured_lines(measured: dict, calibration_normals: str = "") -> list[tuple[str, str]]:
    """The figures a model card records (`scripts/install_bundled_model.py`), as short lines; a share
    of normals flagged that those normals' own thresholds set is said to be in-sample."""
    from SSLAnomalyLib.core.model_files.model_card import counted_in_thresholds

    lines = []
    for name, d in measured.items():
        if name == "shifted" and isinstance(d, dict):
            lines += [(f"shifted ({family})", f"AUROC {f['auroc']:.3f}, {100 * f['fpr_at_threshold']:.0f} % of normals flagged")
                      for family, f in d.get("perturbations", {}).items()]
        elif isinstance(d, dict) and "auroc" in d:
            flagged = f", {100 * d['fpr_at_threshold']:.0f} % of normals flagged" if "fpr_at_threshold" in d else ""
            if flagged and counted_in_thresholds(d, calibration_normals):
                flagged += ", in-sample: these normals also set the threshold"
            lines.append((name, f"AUROC {d['auroc']:.3f} ({d.get('n_normal')} normal vs {d.get('n_abnormal')} abnormal{flagged})"))
        elif isinstance(d, dict) and "pointing_game" in d:
            lines.append((name, f"pointing game {d['pointing_game']:.3f} on {d.get('n_images')} images"))
    return lines
