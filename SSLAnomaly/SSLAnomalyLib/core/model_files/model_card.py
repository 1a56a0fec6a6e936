"""The model card written beside every trained model: what it learned from, what it is not for,
how it was made and how it is calibrated, generated from the manifest so it cannot drift. A card
travels with the model to other sites: it names folders by their base name (and the file list by its
digest), never by a path on the machine that made it."""

from __future__ import annotations

import os
import re
import shlex

from SSLAnomalyLib.core.model.calibration import Calibration
from SSLAnomalyLib.core.model.encoder import IMAGE, LUNGS, EncoderConfig
from SSLAnomalyLib.core.model_files.card_names import base_name, folders, named
from SSLAnomalyLib.core.model_files.manifest import Manifest


def calibration_folders(calibration_normals: str) -> list[str]:
    """The folders of a manifest's `data.calibration_normals` (joined by os.pathsep), normalised."""
    return [os.path.normpath(f) for f in calibration_normals.split(os.pathsep) if f]


def command_words(text: str) -> list[str]:
    """A recorded command split as the shell would (by blanks where its quoting is broken)."""
    try:
        return shlex.split(text)
    except ValueError:
        return text.split()


def evaluated_normals(text: str) -> str | None:
    """The `--normal` folder of a recorded `sslanomaly evaluate` command, normalised."""
    words = command_words(text)
    return os.path.normpath(words[words.index("--normal") + 1]) if "--normal" in words[:-1] else None


def counted_in_thresholds(evaluation: dict, calibration_normals: str) -> bool:
    """Whether the normals of a recorded `evaluate` also set the model's thresholds (manifest
    `data.calibration_normals`): their share flagged is then in-sample."""
    return evaluated_normals(evaluation.get("command", "")) in calibration_folders(calibration_normals)


def command(text: str) -> str:
    """A recorded command with every path argument (`DIR`, `--opt=DIR`) reduced to its base name."""
    words = command_words(text)
    shown = []
    for word in words:
        option, eq, value = word.rpartition("=") if word.startswith("-") else ("", "", word)
        shown.append(shlex.quote(option + eq + (base_name(value) if "/" in value or "\\" in value else value)))
    return " ".join(shown)


def objectives(pretext: dict) -> str:
    """'anatpaste (weight 1)'...; manifests from before the objectives name synthetic kinds only."""
    if "objectives" not in pretext:
        return ", ".join(pretext["kinds"]) + " (synthetic anomalies pasted inside the lung fields)"
    return ", ".join(f"{o['name']} (weight {o['weight']:g})" for o in pretext["objectives"])


def model_card(manifest: Manifest) -> str:
    m = manifest.to_dict()  # the card renders the whole document, section by section, as it will be written
    t, c, e = m["training"], m["calibration"], m["encoder"]
    return f"""# SSLAnomaly model `{m['model_id']}`

## What it is
A self-supervised anomaly detector for frontal chest radiographs. A MONAI ResNet
(basic blocks, layers {e['layers']}, widths {e['widths']}, {e['input_size']} px input, one channel)
{origin(t)} on **normal radiographs only**, with the self-supervised objective(s)
{objectives(m['pretext'])}. An image is scored by
its distance from normal in the encoder's feature space (a Ledoit-Wolf Mahalanobis distance of the
embedding pooled from layers {list(manifest.encoder.pooled_layers)} over {pooled_over(manifest.encoder)}, plus a position-aware patch map of layers
{list(manifest.encoder.patch_layers)}, which also gives the heatmap).{acquisition_note(m.get("reference"))}{lungs_note(manifest)}{reconstruction_note(manifest)}{sides_note(manifest)}

## Training data
{normals_line(m)}
- Calibration normals: {calibration_source(m)}.
- No abnormal image and no label was used to train, select a checkpoint, or set a threshold.

## Data licences
{data_licences(m)}

## Not for
{not_for(m)}
## Calibration
Threshold {c['threshold']:.4f} set for a {100 * c['false_positive_rate']:g} % false-positive rate on
{calibration_count(m)}; pixel threshold {c['pixel_threshold']:.4f} (the in-lung heatmap
peak at the same rank: {peaks_above(c)}). Each result reports its
percentile among these normals. {expected_fpr(c)}{views_note(m.get("reference"))}{site_calibration(m.get("site_calibration"))}{federated(m)}

## How it was made
- Command: `{command(t['command']) if t.get('command') else 'sslanomaly train (library call)'}`
- {steps_note(t)}{objects_note(t)}{inherited_note(t)}
- Software: {', '.join(f'{k} {v}' for k, v in m['software'].items())}.

{measured_section(m.get("measured"), m["data"].get("calibration_normals", ""))}"""


def pooled_over(encoder: EncoderConfig) -> str:
    """What the image-level embedding is pooled over, in words."""
    said = {IMAGE: "the whole image", LUNGS: "the image framed by its lung fields"}
    return " and ".join(said[v] for v in encoder.pooled_views) + (
        ", joined" if len(encoder.pooled_views) > 1 else "")


def acquisition_note(reference: dict | None) -> str:
    """Which acquisition directions are projected out of the patch features, and where they came from."""
    found = (reference or {}).get("acquisition_directions")
    if not found:
        return ""
    source = (f"kept from the starting model `{found['kept_from']}`" if "kept_from" in found else
              f"those in which the normals of other acquisitions in `{folders(found['other_source_normals'])}` "
              "differ from the site's")
    return (f"\n{found['k']} acquisition directions of the patch features, {source}, are projected out before "
            "the reference is fitted and an image scored:\na normal is not flagged for the pipeline it came from.")


def lungs_note(manifest: Manifest) -> str:
    """Which lung network drew the fields the reference was fitted on (scoring with another one is warned of)."""
    if manifest.lungs is None:
        return ""
    return f"\nIts lung fields were drawn by the lung network `{manifest.lungs}`."


def reconstruction_note(manifest: Manifest) -> str:
    """How MAE's redrawing error enters the score, where the model scores it."""
    masks = manifest.reconstruction
    if masks is None:
        return ""
    return ("\nMAE's decoder redraws the lung fields patch by patch (patches of "
            f"{100 * masks.patch_fraction:g} % of the side, blanked in {masks.sets} "
            "disjoint sets):\nthe mean squared error of its drawing (`reconstruction`) is averaged into the "
            "texture score with the other two.")


def sides_note(manifest: Manifest) -> str:
    """How the lung-field density imbalance (`sides`) enters the score, where the model scores it."""
    if "sides" not in manifest.component_stats:
        return ""
    rule = manifest.sides
    less = f" less {rule.offset:g}" if rule.offset else ""
    where = f"beyond {rule.gate:g} standard deviations of the normals'" if rule.gate is not None else "of any size"
    return ("\nThe two lung fields' aerated densities are compared too (`sides`: a white-out, a large effusion):\n"
            f"an imbalance {where} raises the score to its deviations{less} where that is higher.")


def inherited_note(training: dict) -> str:
    """What a run started from another model kept of that model's recipe, and what an option set
    otherwise, beside the starting model's value (training/spec.py)."""
    kept, changed = training.get("inherited") or {}, training.get("overridden") or {}
    shown = ", ".join(f"{name.replace('_', ' ')} {recipe_value(name, value)}" for name, value in kept.items())
    given = ", ".join(f"{name.replace('_', ' ')} {recipe_value(name, v['given'])} (the starting model's: "
                      f"{recipe_value(name, v['starting'])})" for name, v in changed.items())
    return ((f"\n- Kept from the starting model's recipe (no option given for them): {shown}." if kept else "")
            + (f"\n- Set otherwise by an option: {given}." if changed else ""))


def recipe_value(name: str, value) -> str:
    return "+".join(o["name"] + (f":{o['weight']:g}" if o["weight"] != 1 else "") for o in value) if name == "pretext" else f"{value}"


def steps_note(t: dict) -> str:
    """The device, seed, steps and time; a refit (no steps) has no checkpoint to choose. A run resumed
    across processes counts its steps' time over all of them, beside the last process's own."""
    if not t["steps"] and not t.get("started_from"):
        return (f"Device {t['device']}, seed {t['seed']}: no training steps and no starting model: the encoder is\n"
                "  random and untrained, a baseline for experiments, not a model to read radiographs with.")
    if not t["steps"]:
        return (f"Device {t['device']}, seed {t['seed']}: no training steps (the starting encoder as it is; only the\n"
                "  normal reference and the thresholds were fitted).")
    return (f"Device {t['device']}, seed {t['seed']}, {t['steps']} steps of batch {t['batch_size']},\n"
            f"  {t.get('step_seconds', t['seconds']):.0f} s of training steps (over every resumed process), "
            f"{t['seconds']:.0f} s in all in the last process;\n"
            + (f"  checkpoint chosen at step {t['chosen_step']} by a normal-only signal\n"
               if t.get("chosen_step") is not None else "  no checkpoint chosen: the last step's encoder kept\n")
            + f"  ({t['selection']}).")


def objects_note(training: dict) -> str:
    share = training.get("foreign_objects") or 0
    return (f"\n- Foreign objects (ECG electrodes, leads, tubes, a marker plate) drawn on {100 * share:.0f} % of\n"
            "  the training views, so that they are learned as normal." if share else "")


def not_for(m: dict) -> str:
    """Who the model is not for, from the population it learned (manifest `population`)."""
    label = (m.get("population") or {}).get("label")
    if label == "adults":
        learned = ("- Children, lateral or other views, other body parts or modalities. This model learned from adult\n"
                   "  frontal (PA/AP) normals of the NIH Clinical Center (RSNA); for children use the bundled\n"
                   "  `pediatric` model.\n")
    elif label == "children":
        learned = ("- Adults, lateral or other views, other body parts or modalities. This model learned from children\n"
                   "  aged 1-5 at one hospital (Guangzhou, Kermany/ZhangLab data); for adults use the bundled `adult` model.\n")
    else:
        learned = "- Any population, view or modality unlike the training normals.\n"
    return (learned + "- Other sites without checking: calibrate on your own normals (`sslanomaly calibrate`), refit\n"
            "  (`sslanomaly train --start-from MODEL --minutes 0`) or train (`sslanomaly train`).\n"
            "- Diagnosis. It flags images and regions that differ from the normals it learned; a radiologist decides.\n")


def views_note(reference: dict | None) -> str:
    """What the normal reference was fitted on beyond the normals themselves."""
    reference = reference or {}
    parts = []
    if reference.get("augmented_views_per_normal"):
        parts.append(f"the normal reference also holds {reference['augmented_views_per_normal']} acquisition-augmented "
                     "copies of each normal")
    return ("\n" + "; ".join(parts).capitalize() + ".") if parts else ""


def site_calibration(c: dict | None) -> str:
    """Where the thresholds came from when a site recalibrated the model (`sslanomaly calibrate`)."""
    if not c:
        return ""
    return (f"\n\n**Calibrated on site normals** by `sslanomaly calibrate` on {c['when']}: the normals of\n"
            f"`{folders(c['normals'])}` (file-list hash `{c['files_sha256_16']}`), starting from model `{c['from_model']}`; the\n"
            "encoder and normal reference are unchanged, the score standardisation, percentiles and thresholds\n"
            f"are these normals'.{reference_check(c.get('n_in_reference'))}{normals_given(c)}")


LEFT_OUT = {"unreadable": "unreadable", "copies": "copies of an image given before",
            "in_reference": "among the normals the reference was fitted on"}


def normals_given(c: dict) -> str:
    """How many normals the site gave, how many were scored, and which were left out and why: only the
    manifest's `skipped` said so, and a site reading the card could not tell some were never used."""
    left_out = c.get("left_out")
    if left_out is None:  # calibrated before the manifest recorded it
        return ""
    why = [f"{len(files)} {LEFT_OUT[kind]} ({named(files, 'site_calibration.skipped')})"
           for kind, files in left_out.items() if files]
    given = c["n_normals"] + sum(map(len, left_out.values()))
    return f"\nOf the {given} files given, {c['n_normals']} were scored; " + (
        f"left out: {'; '.join(why)}." if why else "none was left out.")


def reference_check(found: int | None) -> str:
    """Whether the site's normals were checked against the reference's (a normal the reference was
    fitted on scores low, and thresholds set on it are too low), and how many it held."""
    if found is None:
        return (" The starting model keeps no record of the normals its reference was fitted on: whether any\n"
                "of these were among them was not checked.")
    if found:
        return f" {found} of those given were among the normals the reference was fitted on and were set aside."
    return " None of them is among the normals the reference was fitted on (checked)."


def normals_line(m: dict) -> str:
    """What the reference was fitted on, and how the thresholds' scores were kept out of it. A merge
    replaced the starting model's reference with the sites' normals: its training normals are in it no more."""
    d, f = m["data"], m.get("federated")
    if f:
        return (f"- Normals: the {f['n_normals']} normals of {f['n_sites']} site(s), in the reference through their merged\n"
                f"  statistics (below, under Calibration); the starting model's `{folders(d['normals'])}` no longer are.")
    if d.get("cross_fitted_folds"):
        return (f"- Normals: `{folders(d['normals'])}` ({d['n_train']}, every one in the reference; file-list hash\n"
                f"  `{d['files_sha256_16']}`). Thresholds, score and position standardisation come from out-of-fold\n"
                f"  scores: {d['cross_fitted_folds']} folds, each normal scored by the reference fitted without its fold.")
    return (f"- Normals: `{folders(d['normals'])}` ({d['n_train']} for the reference, {d['n_held_out']} held out;\n"
            f"  file-list hash `{d['files_sha256_16']}`).")


def peaks_above(c: dict) -> str:
    """How many calibration normals' in-lung peaks exceed the pixel threshold, as counted: "the peak
    that 0.1 % of calibration normals reach" was said beside "the 0.1 % asked cannot be met", where
    the threshold was the highest of 28 normals' peaks."""
    calibration = Calibration.from_dict(c)  # the threshold applied: that of the stored peaks
    above = int((calibration.normal_peaks > calibration.pixel_threshold).sum())
    return f"{above} of the {len(calibration.normal_peaks)} calibration normals' peaks are above it"


def expected_fpr(c: dict) -> str:
    """The false-positive rate the threshold implies on new normals, with its interval; only its first
    letter raised (str.capitalize lowered the rest, naming set-aside normals that do not exist)."""
    text = Calibration.from_dict(c).text()
    return text[:1].upper() + text[1:] + "."


def federated(m: dict) -> str:
    """Where the reference came from when sites merged their statistics (`sslanomaly merge`)."""
    f = m.get("federated")
    if not f:
        return ""
    how = ("exactly the fit on all of them" if f["exact"] else
           "its pooled Gaussian and patch means exact, its patch covariance approximate (first round: each site's\n"
           "residuals against its own means; a second round of `reference-stats --means` makes it exact)")
    calibrated = ("" if f.get("calibrated") else  # a site calibration before the merge set thresholds above
                  "\n**Not yet calibrated**: the score standardisation and thresholds above are the starting model's;\n"
                  "run `sslanomaly calibrate` on this model with the site's own normals before use.")
    return (f"\n\n**Merged from {f['n_sites']} site(s)' statistics** by `sslanomaly merge` on {f['when']}: the reference of\n"
            f"{f['n_normals']} normals, {how}. The encoder is model `{f['encoder_of']}`'s. Each site sent sums over its\n"
            "normals (pooled embedding moments, per-position patch sums, residual moments), their number and a\n"
            f"hash of their file names: no pixels, no per-image value.{calibrated}")


def calibration_source(m: dict) -> str:
    """Where the calibration normals came from: the site's (`sslanomaly calibrate`) or the training's."""
    if m.get("site_calibration"):
        return "the site's own, which replaced the training's (see Calibration)"
    d = m["data"]
    return f"`{folders(d['calibration_normals'])}` ({d['n_calibration']} images)"


def calibration_count(m: dict) -> str:
    """The one count of the normals that set the thresholds, with the augmented copies they were
    counted with (a site calibration scores each normal once)."""
    c, views = m["calibration"], (m.get("reference") or {}).get("calibration_augmented_views_per_normal")
    aside = len(c.get("set_aside_scores", []))
    if m.get("site_calibration") or not views:
        return f"{c['n_normals'] + aside} calibration normals" + (f" ({aside} set aside: below)" if aside else "")
    return (f"{m['data']['n_calibration']} calibration normals, each also counted in {views} acquisition-augmented\n"
            f"cop{'y' if views == 1 else 'ies'} (other field of view, exposure, contrast: {c['n_normals']} views in all), so "
            "that the stated\nfalse-positive rate holds for normals taken otherwise too")


DATA_LICENCES = {  # folder name of a public data set -> the terms its images come under
    "kermany": "Kermany et al. pediatric radiographs (doi:10.17632/rscbjbr9sj.2): CC BY 4.0, credit the authors",
    "rsna": "RSNA Pneumonia Detection Challenge: non-commercial research use",
    "nih": "NIH ChestX-ray14: public; cite Wang et al. (CVPR 2017) and acknowledge the NIH Clinical Center",
    "openist": "OpenIST chest X-ray set: licence unclear",
}
LUNG_NETWORK_DATA = "openist"  # every model scores inside the lung fields of the bundled lung-field network


def licences_named(folders: str, terms: list[str] = ()) -> list[str]:
    """The terms of each public data set named in `folders` (its folder name) or in `terms`."""
    return [DATA_LICENCES[key] for key in DATA_LICENCES
            if re.search(rf"\b{key}\b", folders.lower()) or key in terms]


def data_licences(m: dict) -> str:
    """The terms of the public data sets the weights were fitted on, found by their folder names
    (a site's own normals carry the site's terms), of the model the encoder started from (its card
    says), and of the lung-field network's masks, which every model uses."""
    d, site = m["data"], m.get("site_calibration") or {}
    named = " ".join([d.get("normals", ""), d.get("calibration_normals", ""), site.get("normals", "")])
    lines = [f"- {terms}." for terms in licences_named(named, m.get("data_terms", []))] or [
        "- The normals above: the terms of the site that gave them."]
    start = m["training"].get("started_from")
    if start:
        lines.append(f"- The encoder also carries the data terms of model `{start['model_id']}`, which it started from.")
    lines.append(f"- Lung fields: {DATA_LICENCES[LUNG_NETWORK_DATA]} (the bundled lung-field network's masks).")
    return "\n".join(lines)


def origin(training: dict) -> str:
    """How the encoder came to be: from scratch, or from another model's encoder (fine-tuned or not)."""
    start = training.get("started_from")
    if not start:
        return "was trained from scratch"
    if training["steps"] and training.get("encoder_frozen"):
        return (f"is the encoder of model `{start['model_id']}` unchanged (frozen while MAE's decoder was trained on\n"
                f"it for {training['steps']} steps; the reference and calibration below fitted anew), itself trained")
    if training["steps"]:
        return (f"started from the encoder of model `{start['model_id']}` and was trained {training['steps']} more\n"
                f"steps (kept: step {training.get('chosen_step')}; step 0 is the starting encoder)")
    return (f"is the encoder of model `{start['model_id']}` unchanged (no training steps here: only the\n"
            "normal reference and the calibration below were fitted anew), itself trained")


def measured_section(measured: dict | None, calibration_normals: str = "") -> str:
    """The figures measured on this model after training (recorded by scripts/install_bundled_model.py
    from `sslanomaly evaluate` outputs), each with the command that produced it; the share of dev
    normals flagged is said to be in-sample where those normals also set the thresholds."""
    if not measured:
        return ("Measured figures (dev AUROC, localisation, speed) and the commands that produced them are in\n"
                "`docs/model.md` of the SSLAnomaly repository.\n")
    lines = []
    dev = measured.get("dev")
    if dev:
        parts = ", ".join(f"{name}-level alone {v['auroc']:.3f}" for name, v in
                          (("image", dev["components"]["pooled"]), ("patch", dev["components"]["patch"])))
        at = (f"; {100 * dev['fpr_at_threshold']:.0f} % of these normals and {100 * dev['tpr_at_threshold']:.0f} % of the "
              "abnormals above the threshold") if "fpr_at_threshold" in dev else ""
        if at and counted_in_thresholds(dev, calibration_normals):
            at += " (these normals also set the threshold, so their share is in-sample)"
        lines.append(f"- Dev AUROC **{dev['auroc']:.3f}**, AP {dev['ap']:.3f} ({parts}) on {dev['n_normal']} normal vs\n"
                     f"  {dev['n_abnormal']} pneumonia radiographs, never trained on{at}:\n  `{command(dev['command'])}`")
    shifted = measured.get("shifted")
    if shifted:
        rows = "; ".join(f"{family} AUROC {f['auroc']:.3f}, {100 * f['fpr_at_threshold']:.0f} % of normals flagged"
                         for family, f in shifted["perturbations"].items())
        lines.append(f"- The same images under seeded acquisition perturbations (docs/method.md): {rows}:\n"
                     f"  `{command(shifted['command'])}`")
    for key, what in (("localisation", "adult tuberculosis radiographs with lesion boxes (TBX11K)"),
                      ("nih_boxes", "adult pneumonia radiographs with NIH expert boxes")):
        loc = measured.get(key)
        if loc:
            lines.append(f"- Localisation on {loc['n_images']} {what}, never trained on: pointing game\n"
                         f"  **{loc['pointing_game']:.3f}** against {loc['random_pointing_baseline']:.3f} for a random heatmap, "
                         f"box AUROC {loc['box_auroc']:.3f}:\n  `{command(loc['command'])}`")
    lines += [f"- Same recipe, seed {r['seed']}: dev AUROC {r['auroc']:.3f}, AP {r['ap']:.3f}, pointing game "
              f"{r['pointing_game']:.3f}." for r in measured.get("other_seeds", [])]
    return ("## Measured\n" + "\n".join(lines) + "\n\nEvery variant tried, and speed and memory, are in "
            "`docs/model.md` and `docs/benchmarks.md` of the\nSSLAnomaly repository.\n")
