"""The model card written beside every trained model: what it learned from, what it is not for,
how it was made and how it is calibrated, generated from the manifest so it cannot drift."""

from __future__ import annotations


def model_card(m: dict) -> str:
    t, d, c, e = m["training"], m["data"], m["calibration"], m["encoder"]
    return f"""# SSLAnomaly model `{m['model_id']}`

## What it is
A self-supervised anomaly detector for frontal chest radiographs. A MONAI ResNet
(basic blocks, layers {e['layers']}, widths {e['widths']}, {e['input_size']} px input, one channel)
was trained from scratch on **normal radiographs only**, with anatomy-aware synthetic anomalies
({', '.join(m['pretext']['kinds'])}) pasted inside an unsupervised lung mask. An image is scored by
its distance from normal in the encoder's feature space (pooled Ledoit-Wolf Mahalanobis plus a
position-aware patch map, layers {e['patch_layers']}), which also gives the heatmap.

## Training data
- Normals: `{d['normals']}` ({d['n_train']} for the reference, {d['n_held_out']} held out;
  file-list hash `{d['files_sha256_16']}`).
- Calibration normals: `{d['calibration_normals']}` ({d['n_calibration']} images).
- No abnormal image and no label was used to train, select a checkpoint, or set a threshold.

## Not for
- Adults, lateral or other views, other body parts, or any population unlike the training normals,
  without retraining on local normals (`sslanomaly train`). The bundled default model learned from
  children aged 1-5 at one hospital (Guangzhou, Kermany/ZhangLab data).
- Diagnosis. It flags images and regions that differ from the normals it learned; a radiologist decides.

## Calibration
Threshold {c['threshold']:.4f} at a {100 * c['false_positive_rate']:.0f} % false-positive rate on
{c['n_normals']} calibration normals; pixel threshold {c['pixel_threshold']:.4f} (the in-lung heatmap
peak that {100 * c['false_positive_rate']:.0f} % of calibration normals reach). Each result reports its
percentile among these normals.

## How it was made
- Command: `{t.get('command') or 'sslanomaly train (library call)'}`
- Device {t['device']}, seed {t['seed']}, {t['steps']} steps of batch {t['batch_size']},
  {t['seconds']:.0f} s in all; checkpoint chosen at step {t['chosen_step']} by a normal-only signal
  ({t['selection']}).
- Software: {', '.join(f'{k} {v}' for k, v in m['software'].items())}.

Measured figures (dev AUROC, localisation, speed) and the commands that produced them are in
`docs/model.md` of the SSLAnomaly repository.
"""
