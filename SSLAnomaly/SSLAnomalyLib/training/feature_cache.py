"""Normals read from disk and encoded batch by batch, their features kept in a temporary file.

A streaming fit passes over the normals several times (sums, then residuals against the means,
then scores against the fitted reference); reading and encoding each image once and re-reading
its features from disk keeps what is held flat whatever the number of normals, at the cost of disk
space (c x h x w floats per image, about 0.8 MB at the default size), freed at the end.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from SSLAnomalyLib.core.anatomy.lung_network import bundled_segmenter
from SSLAnomalyLib.core.model.preprocess import to_model_input
from SSLAnomalyLib.core.model.scoring import Scorer
from SSLAnomalyLib.core.model_files.reference_normals import image_marks
from SSLAnomalyLib.core.reading.chest_view import refuse_other_view
from SSLAnomalyLib.core.reading.image import Radiograph, image_identity
from SSLAnomalyLib.core.reading.images import ReadError, as_folders, list_inputs, read_radiograph
from SSLAnomalyLib.core.results.outputs import distinct_inputs
from SSLAnomalyLib.training.progress import progress_over
from SSLAnomalyLib.training.trainer import augment

BATCH = 32

# what an encoded item is: a normal (in the reference and scored), an augmented copy in the
# reference only, or an image scored for calibration only (an augmented copy, or a separate normal)
ORIGINAL, REFERENCE_VIEW, CALIBRATION_ONLY = 0, 1, 2


def normal_files(folders) -> list[Path]:
    """The image files of a folder (or of several: `io.as_folders`), each once: a folder given twice,
    overlapping folders or a link beside its file would count one normal twice, in the reference and
    in the number of normals that says how stable a threshold is. None is an error that names them."""
    for folder in as_folders(folders):  # else a missing folder is one unreadable "image"
        if not Path(folder).exists():
            raise ReadError(folder, "no such folder")
    files, _ = distinct_inputs(list_inputs(as_folders(folders)))
    if not files:
        raise ReadError(", ".join(as_folders(folders)), "no images found in the folder")
    return files


def normal_image(path) -> Radiograph:
    """One normal as read. A volume is refused (ReadError): a normal is one radiograph, and its first
    slice alone (a CT's, a stack's) would enter the reference unnamed. So is an image whose DICOM
    header says it is no frontal chest radiograph (a lateral, a hand): it would widen what is normal."""
    image = read_radiograph(path)
    if image.shape[0] > 1:
        raise ReadError(path, f"a volume of {image.shape[0]} slices, not one radiograph")
    refuse_other_view(image, path)
    return image


def read_batches(files: list[Path], size: int, batch: int = BATCH, progress: bool = False,
                 first: dict[str, Path] | None = None
                 ) -> Iterator[tuple[list[int], np.ndarray, list[str], list[frozenset[bytes]]]]:
    """(indices into `files`, model inputs, the reasons of files left out, the marks of the files
    kept: what a model records of its reference normals), `batch` files at a time: never every image
    at once. A copy of an image already read (its pixels, as `calibrate` knows one) is left out,
    named: it is one normal. `first` (image identity: its first file) is what was already read, by
    an earlier call too where a caller passes one on."""
    first = {} if first is None else first
    for start in progress_over(range(0, len(files), batch), "reading and encoding", "batch", show=progress):
        kept, images, skipped, marks = [], [], [], []
        for i in range(start, min(len(files), start + batch)):
            try:
                image = normal_image(files[i])
            except ReadError as e:
                skipped.append(str(e))
                continue
            if first.setdefault(image.identity, files[i]) != files[i]:
                skipped.append(f"{files[i]}: the same image as {first[image.identity]}, counted once")
                continue
            images.append(to_model_input(image.shown(0), size))
            kept.append(i)
            marks.append(image_marks(image))
        yield kept, (np.stack(images) if images else np.empty((0, size, size), np.float32)), skipped, marks


def distinct_images(images01: np.ndarray, files: list[str], first: dict[str, str] | None = None
                    ) -> tuple[list[int], list[str]]:
    """(indices of the images whose pixels no earlier one has, a note naming each other one) of
    normals in memory (a pack's model inputs): a copy in a pack, or in a held-back pack beside it
    (`first`, shared), is one normal, which the reference and the thresholds weighed twice and the
    count of normals counted twice. A pack names files without folders, so a name never says two
    entries are one image; their pixels do."""
    first = {} if first is None else first
    kept, copies = [], []
    for i, image in enumerate(images01):
        key = image_identity(image)
        if key in first:
            copies.append(f"{files[i]}: the same image as {first[key]}, counted once")
        else:
            first[key] = files[i]
            kept.append(i)
    return kept, copies


def source_batches(source, size: int, progress: bool = False, at_most: int | None = None, seed: int = 0,
                   first: dict | None = None):
    """(file names, batches as `read_batches` yields them, with its `first`) of folders, or of normals
    already in memory (an object with `images01`, `files` and the notes of those already left out,
    `skipped`, e.g. a normals pack, whose images have no marks); with `at_most`, of a seeded subset of
    that many, in their order."""
    pack = hasattr(source, "images01")
    files = list(source.files) if pack else normal_files(source)
    chosen = np.arange(len(files))
    if at_most is not None:
        chosen = np.sort(np.random.default_rng([seed, 37]).permutation(len(files))[:at_most])
    files = [files[i] for i in chosen]
    if pack:
        return files, _memory_batches(source, chosen, files, {} if first is None else first)
    return files, read_batches(files, size, progress=progress, first=first)


def _memory_batches(source, chosen: np.ndarray, files: list[str], first: dict):
    """`source_batches` of normals in memory: the copies left out named with the first batch."""
    kept, copies = distinct_images(source.images01[chosen], files, first)
    for start in range(0, max(len(kept), 1), BATCH):
        part = kept[start:start + BATCH]
        yield part, source.images01[chosen[part]], (list(source.skipped) + copies) if not start else [], \
            [frozenset()] * len(part)


@dataclass
class CachedBatch:
    pooled: np.ndarray      # (m, d)
    patches: torch.Tensor   # (m, c, h, w)
    lungs: np.ndarray       # (m, s, s) bool
    images: np.ndarray      # (m, s, s) the model inputs (the lung fields' densities are read from them)
    folds: np.ndarray       # (m,)
    kinds: np.ndarray       # (m,)
    names: np.ndarray       # (m,) each item's file name ("" for a reference-only view)


@dataclass
class FeatureCache:
    """Encoded items appended to files in a temporary folder, read back `BATCH` at a time."""

    folder: Path
    folds: list[int] = field(default_factory=list)
    kinds: list[int] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    shapes: dict[str, tuple] = field(default_factory=dict)
    last_lungs: np.ndarray | None = None  # the lung fields of the last batch added

    @classmethod
    def create(cls) -> "FeatureCache":
        return cls(Path(tempfile.mkdtemp(prefix="sslanomaly-features-")))

    def add(self, scorer: Scorer, images01: np.ndarray, folds, kinds, names=None) -> tuple[np.ndarray, torch.Tensor]:
        """Encode `images01` (and draw their lung fields) and append them, named by `names` (their
        files: which normals calibration sets aside); returns the features."""
        if not len(images01):
            return np.empty((0, 0), np.float32), torch.empty(0)
        masks = bundled_segmenter().masks(images01)
        pooled, patches = scorer.features(images01, masks)
        self.last_lungs = masks
        for name, value in (("pooled", pooled), ("patches", patches.numpy()), ("lungs", masks.astype(np.uint8)),
                            ("images", np.asarray(images01, np.float32))):
            self.shapes[name] = value.shape[1:]
            with open(self.folder / name, "ab") as f:
                np.ascontiguousarray(value).tofile(f)
        self.folds += list(folds)
        self.kinds += list(kinds)
        self.names += list(names) if names is not None else [""] * len(images01)
        return pooled, patches

    def __len__(self) -> int:
        return len(self.folds)

    def batches(self) -> Iterator[CachedBatch]:
        folds, kinds, names = np.asarray(self.folds), np.asarray(self.kinds), np.asarray(self.names, dtype=object)
        dtypes = {"pooled": np.float32, "patches": np.float32, "lungs": np.uint8, "images": np.float32}
        for start in range(0, len(self), BATCH):
            m = min(BATCH, len(self) - start)
            read = {}
            for name, dtype in dtypes.items():
                per = int(np.prod(self.shapes[name]))
                read[name] = np.fromfile(self.folder / name, dtype=dtype, count=m * per,
                                         offset=start * per * np.dtype(dtype).itemsize).reshape(m, *self.shapes[name])
            yield CachedBatch(read["pooled"], torch.from_numpy(read["patches"]), read["lungs"].astype(bool),
                              read["images"], folds[start:start + m], kinds[start:start + m], names[start:start + m])

    def close(self) -> None:
        for p in self.folder.iterdir():
            p.unlink()
        self.folder.rmdir()


def augmented(images01: np.ndarray, views: int, rng: np.random.Generator) -> np.ndarray:
    """`views` seeded acquisition-augmented copies of each image (`training.augment`), view-major."""
    if not views or not len(images01):
        return np.empty((0,) + images01.shape[1:], np.float32)
    return np.stack([augment(x, rng) for _ in range(views) for x in images01])
