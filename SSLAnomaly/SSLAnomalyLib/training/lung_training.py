"""`sslanomaly train-anatomy`: the lung U-Net trained on expert lung masks of normal radiographs.

Anatomy labels, not disease labels. A seeded fifth of the images is held out and never trained on;
an image given twice (a copy, a link: its pixels) is one image, trained or held out, never both, and
one that is no one radiograph (unreadable, a volume) is left out, named, as `train` leaves out a normal; the
folder's manifest records the held-out file names and the network's Dice there, measured at each mask's
own resolution through the same path detection uses (`LungFields.on_grid`, post-processing and fallbacks
included). Augmentation is MONAI's: affine (rotation, zoom, shift), elastic, gamma, contrast,
brightness, noise and blur, so the network meets other acquisitions and children's chests; on a share
of images disease is drawn inside the lung field first (`lung_disease.py`), so a white lung is still a lung.
"""

from __future__ import annotations

import hashlib
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from SSLAnomalyLib import __version__
from SSLAnomalyLib.core.anatomy.lung_network import LungNetConfig, LungSegmenter, build_lung_net
from SSLAnomalyLib.core.model.preprocess import resize, to_model_input
from SSLAnomalyLib.core.model_files import model_folder
from SSLAnomalyLib.core.model_files.manifest import LUNG_SEGMENTATION, Manifest
from SSLAnomalyLib.core.model_files.card_names import base_name
from SSLAnomalyLib.core.model_files.model_card import command as card_command, licences_named
from SSLAnomalyLib.core.files.errors import with_left_out
from SSLAnomalyLib.core.reading.images import ReadError, list_inputs, read_radiograph
from SSLAnomalyLib.training.feature_cache import distinct_images, normal_image
from SSLAnomalyLib.training.fitting import refuse_existing_out, run_lock, work_dir
from SSLAnomalyLib.training.lung_checkpoint import CHECKPOINT, SAVE_EVERY_SECONDS, LungRun, LungRunState
from SSLAnomalyLib.training.lung_disease import KINDS, draw_disease
from SSLAnomalyLib.training.progress import Progress, progress_over

HELD_OUT_FRACTION = 0.2


def negative_example(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """An input with no upright lung fields (`--negative-share`): noise at a random scale, or a
    training radiograph turned by 90, 180 or 270 degrees, with an empty mask. Measured and not used
    for the bundled network: it made the network give up real lungs of children and of dense,
    consolidated adult lungs far more often (docs/anatomy.md)."""
    from scipy import ndimage

    n = image.shape[-1]
    if rng.random() < 0.5:
        x = ndimage.gaussian_filter(rng.random((n, n)), rng.uniform(0, n / 8))
    else:
        x = np.rot90(image[0], k=int(rng.choice([1, 2, 3])))
    x = (x - x.min()) / (np.ptp(x) + 1e-6)
    return x.astype(np.float32)[None]


def training_example(image: np.ndarray, label: np.ndarray, rng: np.random.Generator, augment,
                     negative_share: float, disease_share: float, disease_kinds: tuple[str, ...] = KINDS) -> dict:
    """One augmented {"image", "label"} pair: a negative example on `negative_share` of draws, else the
    radiograph, with one of `disease_kinds` drawn on its lung field (label unchanged) on `disease_share` of them."""
    if rng.random() < negative_share:
        return augment({"image": negative_example(image, rng), "label": np.zeros_like(label)})
    if disease_share and rng.random() < disease_share:
        image = draw_disease(image[0], label[0] > 0.5, rng, disease_kinds)[None]
    return augment({"image": image, "label": label})


def read_pairs(images_dir, masks_dir) -> list[tuple[Path, Path]]:
    """(image, mask) pairs matched by their path inside the two folders (images/day2/IM1.png has
    masks/day2/IM1.png: by file name alone, day1/IM1.png and day2/IM1.png, two patients, both took
    masks/IM1.png); an image without a mask is an error naming it."""
    if not Path(images_dir).is_dir():  # its images' paths are taken under --masks
        raise ReadError(images_dir, "is a file, not a folder" if Path(images_dir).exists() else "no such folder")
    images = list_inputs([images_dir])
    if not images:
        raise ReadError(images_dir, "no images found in the folder")
    pairs = []
    for f in images:
        m = Path(masks_dir) / f.relative_to(images_dir)
        if not m.is_file():
            raise ReadError(f, f"no mask of the same name in {m.parent}")
        pairs.append((f, m))
    return pairs


def unmatched_masks(images_dir, masks_dir) -> list[str]:
    """A note naming each mask with no image at its path under `images_dir` (the image renamed, moved or
    not copied): an expert's drawing that is never trained on is said, not passed over in silence."""
    return [f"{m}: a mask with no image at its path under {images_dir}" for m in list_inputs([masks_dir])
            if not os.path.lexists(Path(images_dir) / m.relative_to(masks_dir))]


def distinct_pairs(images_dir, masks_dir, size: int, progress: bool = True
                   ) -> tuple[list, np.ndarray, np.ndarray, list[str]]:
    """(the pairs of `read_pairs` to use, their model inputs and labels at `size`, a note naming each
    pair left out), as `train` takes its normals: an image that is no one radiograph (unreadable, or a
    volume, whose first slice would be trained on unnamed: `normal_image`) is left out, and a radiograph
    under two names (a copy, a link) is one image, counted once by its pixels (`distinct_images`), else
    the seeded split could train on one copy and measure the other, flattering the held-out Dice.
    Every mask is checked here, before the training budget is spent."""
    pairs = read_pairs(images_dir, masks_dir)
    read, images, labels, left_out = [], [], [], unmatched_masks(images_dir, masks_dir)
    for f, m in progress_over(pairs, "reading", "img", show=progress):
        try:
            image = normal_image(f).shown(0)
        except ReadError as e:
            left_out.append(str(e))
            continue
        mask = load_mask(m, image)
        read.append((f, m))
        images.append(to_model_input(image, size))
        labels.append(resize(mask.astype(np.float32), (size, size)) >= 0.5)
    if not read:
        raise ReadError(images_dir, with_left_out("none of its images is one readable radiograph", left_out))
    kept, copies = distinct_images(np.stack(images), [str(f) for f, _ in read])
    return [read[i] for i in kept], np.stack(images)[kept], np.stack(labels)[kept], left_out + copies


def load_pair(image_path: Path, mask_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The image as [0, 1] pixels and the mask as bool, both at the image's own size and as viewers
    show them (detection sees a file stored bottom-up turned upright: the network must learn it so);
    an image that is no one radiograph (`normal_image`), or a mask that does not fit it, is an error naming it."""
    image = normal_image(image_path).shown(0)
    return image, load_mask(mask_path, image)


def load_mask(mask_path: Path, image: np.ndarray) -> np.ndarray:
    """The mask of `image` (as shown) as bool; one of another size, a volume, or with no lung pixel or
    nothing else, is an error naming it."""
    read = read_radiograph(mask_path, blank_ok=True)
    if read.shape[0] > 1:
        raise ReadError(mask_path, f"mask is a volume of {read.shape[0]} slices, its image one radiograph")
    mask = read.shown(0) > 0
    if image.shape != mask.shape:
        raise ReadError(mask_path, f"mask is {mask.shape[1]}x{mask.shape[0]}, its image {image.shape[1]}x{image.shape[0]}")
    if not mask.any() or mask.all():
        raise ReadError(mask_path, f"mask marks {'no' if not mask.any() else 'every'} pixel as lung (nonzero = lung)")
    return mask


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(bool), b.astype(bool)
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else float(2 * (a & b).sum() / total)


def augmentation(seed: int):
    """MONAI dictionary transforms over {"image", "label"} (1, s, s) arrays."""
    from monai import transforms as T

    keys = ("image", "label")
    t = T.Compose([
        T.RandAffined(keys, prob=0.8, rotate_range=0.2, scale_range=(0.25, 0.25), translate_range=(0.1, 0.1),
                      mode=("bilinear", "nearest"), padding_mode="zeros"),
        T.Rand2DElasticd(keys, spacing=(24, 24), magnitude_range=(0.5, 2.0), prob=0.3, mode=("bilinear", "nearest"),
                         padding_mode="zeros"),
        T.RandAdjustContrastd("image", gamma=(0.6, 1.6), prob=0.5),
        T.RandScaleIntensityd("image", factors=0.2, prob=0.5),
        T.RandShiftIntensityd("image", offsets=0.08, prob=0.5),
        T.RandGaussianSmoothd("image", sigma_x=(0.3, 1.2), sigma_y=(0.3, 1.2), prob=0.2),
        T.RandGaussianNoised("image", std=0.03, prob=0.2),
    ])
    t.set_random_state(seed)
    return t


def train_lung_model(images_dir, masks_dir, out_dir, minutes: float = 12.0, seed: int = 0,
                     config: LungNetConfig = LungNetConfig(), batch_size: int = 16, command: str = "",
                     progress: bool = True, negative_share: float = 0.0, disease_share: float = 0.5,
                     disease_kinds: tuple[str, ...] = KINDS, overwrite: bool = False, restart: bool = False) -> Path:
    """Train, measure on the held-out fold and write a verified lung model folder (a model already in
    `out_dir` is replaced only with `overwrite`, and refused before any training). An unfinished run of
    the same settings in `out_dir`'s work folder is resumed (lung_checkpoint.py), unless `restart`."""
    with run_lock(out_dir):  # from the first look at --out until the model is in it
        work = work_dir(out_dir)
        refuse_existing_out(out_dir, overwrite, work / CHECKPOINT, "seconds")
        size = config.input_size
        pairs, images, labels, left_out = distinct_pairs(images_dir, masks_dir, size, progress)
        order = np.random.default_rng(seed).permutation(len(pairs))
        n_held = max(1, int(round(HELD_OUT_FRACTION * len(pairs))))
        held_at, train_at = sorted(order[:n_held]), sorted(order[n_held:])
        held, train = [pairs[i] for i in held_at], [pairs[i] for i in train_at]
        if len(train) < 8:
            raise ReadError(images_dir, with_left_out(f"only {len(train)} training images; at least 8 are needed",
                                                      left_out))
        images = images[train_at][:, None].astype(np.float32)
        labels = labels[train_at][:, None].astype(np.float32)

        identity = {"images": str(Path(images_dir).resolve()), "masks": str(Path(masks_dir).resolve()),
                    "pixels": hashlib.sha256(images.tobytes() + labels.tobytes()).hexdigest()[:16], "seed": seed,
                    "input_size": size, "batch_size": batch_size, "negative_share": negative_share,
                    "disease_share": disease_share, "disease_kinds": list(disease_kinds)}
        run = LungRun(work, identity, restart)
        torch.manual_seed(seed)
        net = build_lung_net(config)
        opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=1e-4)
        state = run.resume(net, opt)
        if state is None:
            state, rng, augment = LungRunState(), np.random.default_rng(seed), augmentation(seed)
        else:  # the draws go on seeded by the step (a time budget never gave the same steps twice anyway)
            print(f"resuming the unfinished run in {work} from its checkpoint at step {state.step} "
                  f"({state.seconds:.0f} s of training done)", file=sys.stderr, flush=True)
            torch.manual_seed(seed + state.step)
            rng, augment = np.random.default_rng([seed, state.step]), augmentation(seed + state.step)
        bar = Progress("training", int(minutes * 60), "s", initial=int(state.seconds), show=progress)
        try:
            _steps(net, opt, run, state, minutes * 60, lambda: [
                training_example(images[i], labels[i], rng, augment, negative_share, disease_share, disease_kinds)
                for i in rng.integers(0, len(images), batch_size)], bar)
        except KeyboardInterrupt:  # Ctrl-C, or SIGTERM as the command line raises it: keep the steps taken
            run.save(net, opt, state)
            raise
        finally:
            bar.close()
        run.save(net, opt, state)  # a stop while it is measured and written keeps the trained steps, as train's does

        segmenter = LungSegmenter(net, config, "unsaved")
        held_dice, sources = measure(segmenter, held, progress)
        weights = {k: v.detach().contiguous() for k, v in net.state_dict().items()}
        digest = hashlib.sha256(b"".join(np.ascontiguousarray(v.numpy()).tobytes()
                                         for v in weights.values())).hexdigest()[:8]
        manifest = Manifest.from_dict({
            "kind": LUNG_SEGMENTATION,
            "model_id": f"sslanomaly-lungs-s{seed}-w{digest}",
            "network": config.to_dict(),
            "preprocessing": {"resize": [size, size], "keep_aspect": False, "channels": 1,
                              "intensity": "per-image 1st-99th percentile to [0, 1], then (x - 0.5) / 0.25"},
            "training": {"minutes": minutes, "seed": seed, "steps": state.step, "batch_size": batch_size,
                         "negative_share": negative_share, "disease_share": disease_share,
                         "disease_kinds": list(disease_kinds),
                         "seconds": round(state.seconds, 1), "loss": "MONAI DiceCELoss (sigmoid)",
                         "optimiser": "AdamW, lr 3e-3 cosine, weight decay 1e-4", "history": state.history,
                         "command": command},
            "data": {"images": str(images_dir), "masks": str(masks_dir), "n_train": len(train),
                     "held_out": [str(f.relative_to(images_dir)) for f, _ in held], "skipped": left_out},
            "figures": {"held_out_dice_mean": round(float(np.mean(held_dice)), 4),
                        "held_out_dice_median": round(float(np.median(held_dice)), 4),
                        "held_out_dice_min": round(float(np.min(held_dice)), 4),
                        "held_out_n": len(held_dice),
                        "held_out_sources": {s: sources.count(s) for s in sorted(set(sources))}},
            "software": {"sslanomaly": __version__, "python": sys.version.split()[0], "torch": torch.__version__,
                         "platform": platform.platform()},
        })
        folder = model_folder.save(out_dir, weights, {}, manifest, lung_card(manifest), overwrite=overwrite)
        run.finish()
        return folder


def _steps(net, opt, run: LungRun, state: LungRunState, budget: float, draw, bar: Progress) -> None:
    """Train until `budget` seconds of training are spent (over every process of the run), the
    learning rate on a cosine of that time, saving the run every SAVE_EVERY_SECONDS."""
    from monai.losses import DiceCELoss

    loss_fn = DiceCELoss(sigmoid=True)
    t_last, saved_at = time.time(), state.seconds
    while state.seconds < budget:
        for g in opt.param_groups:
            g["lr"] = 3e-3 * 0.5 * (1 + np.cos(np.pi * min(1.0, state.seconds / budget)))
        batch = draw()
        x = torch.stack([torch.as_tensor(np.asarray(b["image"])) for b in batch]).float()
        y = (torch.stack([torch.as_tensor(np.asarray(b["label"])) for b in batch]) > 0.5).float()
        net.train()
        loss = loss_fn(net((x - 0.5) / 0.25), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        state.step += 1
        now = time.time()
        state.seconds, t_last = state.seconds + now - t_last, now
        if state.step % 20 == 0:
            state.history.append([state.step, round(loss.item(), 4)])
        bar.update(int(state.seconds), step=state.step, loss=f"{loss.item():.3f}")
        if state.seconds - saved_at >= SAVE_EVERY_SECONDS:
            run.save(net, opt, state)
            saved_at, t_last = state.seconds, time.time()


def measure(segmenter: LungSegmenter, pairs, progress: bool = True) -> tuple[list[float], list[str]]:
    """Dice of each image's lung fields (as `detect --lungs` writes them) against its mask, and the
    source each came from (network, unsupervised, prior)."""
    dices, sources = [], []
    for f, m in progress_over(pairs, "measuring", "img", show=progress):
        image, mask = load_pair(f, m)
        fields, = segmenter.fields(to_model_input(image, segmenter.config.input_size)[None])
        dices.append(dice(fields.on_grid(*mask.shape), mask))
        sources.append(fields.source)
    return dices, sources


def left_out_note(data: dict) -> str:
    """The card's word on the images left out (named in the manifest's data.skipped)."""
    n = len(data.get("skipped") or [])
    return f" ({n} image(s) left out, each named with its reason in the manifest)" if n else ""


def lung_card(manifest: Manifest) -> str:
    """The lung network's card; like every card it names folders by their base names, never by a
    path of the machine that made the model (card_names)."""
    fig, data, network, training = (manifest.section(name) for name in ("figures", "data", "network", "training"))
    licences = "; ".join(licences_named(f"{data['images']} {data['masks']}")) or \
        "the site's own images and masks, under the site's terms"
    return f"""# Lung-field segmentation model `{manifest.model_id}`

**What it is.** A MONAI U-Net (channels {network['channels']}) that outlines both lung fields of a
frontal chest radiograph at {network['input_size']} px; SSLAnomaly uses it wherever it says "inside the
lungs" (synthetic pastes, the patch score, findings, heatmap damping, the lung output and the Slicer segment).

**Trained on** {data['n_train']} radiographs with lung masks (`{base_name(data['images'])}`, masks `{base_name(data['masks'])}`), seed
{training['seed']}, {training['steps']} steps in {training['seconds']:.0f} s on the CPU{left_out_note(data)}. On
{training.get('disease_share', 0):.0%} of the training images one of {', '.join(training.get('disease_kinds', KINDS))} was drawn on
one lung field with its mask unchanged, so that a white lung is still outlined as a lung.

**Measured** on the held-out fold of {fig['held_out_n']} images of the same set (never trained on; file names
in the manifest), at each mask's own resolution: mean Dice {fig['held_out_dice_mean']:.3f}, median
{fig['held_out_dice_median']:.3f}, minimum {fig['held_out_dice_min']:.3f}; sources {fig['held_out_sources']}.

**Data licences.** {licences}

**Not for.** Lateral views, CT or other modalities. On a population its training images did not hold
(children, for the bundled network's adults), check the outline first (docs/anatomy.md shows the bundled
network on Kermany radiographs). An implausible output (one lung missing, far too
small or large, very asymmetric) falls back to the unsupervised mask, then to the lung prior, and the
result says so in its warnings.

**Command.** `{card_command(training['command'])}`
"""
