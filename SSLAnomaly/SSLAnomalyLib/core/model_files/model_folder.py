"""The model folder: safetensors weights and arrays, a JSON manifest with SHA-256 of every file,
and a model card. Loading verifies every hash, the manifest's seal (and, where the site asks, its
signature: core/model_files/signing.py) and the format version before anything is used, and nothing in a model
folder is ever unpickled.

    model.safetensors    encoder weights ("encoder.*"), normal-reference arrays ("reference.*", with
                         the marks of the normals it was fitted on: reference_normals.py) and,
                         for an encoder trained with `mae`, its decoder ("decoder.*")
    manifest.json        format version, architecture, preprocessing, calibration, training summary,
                         software versions, {file: sha256}
    MODEL_CARD.md        what it was trained on, what it is not for, figures and commands

A folder is written whole: staged beside its place, verified, then renamed into it under a lock,
so that no reader sees half a model and no two writers mix theirs; an existing model is replaced
only when the writer is told to (`--overwrite`), and a folder of anything else never is. What a
writer killed outright leaves beside the folder is put back or removed by the next (leftovers.py).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes

from SSLAnomalyLib.core.files.digest import sha256
from SSLAnomalyLib.core.files.errors import PathError
from SSLAnomalyLib.core.files.json_text import strict, visible
from SSLAnomalyLib.core.files.locks import folder_lock
from SSLAnomalyLib.core.model.reconstruction import RECONSTRUCTION
from SSLAnomalyLib.core.model_files import leftovers, registry, signing
from SSLAnomalyLib.core.model_files.manifest import ANOMALY, KIND_NAMES, Manifest, ManifestFieldError

FORMAT_VERSION = 2  # 2: the manifest is sealed by its own digest (manifest_sha256)
WEIGHTS = "model.safetensors"
MANIFEST = "manifest.json"
CARD = "MODEL_CARD.md"
MAX_DIGITS = 309  # the most digits of a whole number a float holds (sys.float_info.max is about 1.8e308)
MODEL_ENTRIES = (WEIGHTS, MANIFEST, CARD, "work")  # work/: checkpoints, kept inside by trains of before
INPUT_SIZES = range(32, 1025)  # the input sizes in pixels a model folder may hold (check_fields), --size's too


class ModelError(PathError):
    """A model folder that cannot be used, with the folder and the reason."""

    prefix = "model "


@dataclass(frozen=True)
class ModelFolder:
    """A loaded, verified model folder: its manifest, the encoder's weights, the reference arrays
    and MAE's decoder (empty unless the model scores `reconstruction`)."""

    path: Path
    manifest: Manifest
    encoder_state: dict[str, torch.Tensor]
    arrays: dict[str, np.ndarray]
    decoder_state: dict[str, torch.Tensor] = field(default_factory=dict)


def resolve(model: str | os.PathLike) -> Path:
    """A bundled model's name ('adult', 'pediatric', 'default') means its folder; anything else is a path."""
    return registry.resolve(model)


def fingerprint(model: str | os.PathLike) -> tuple:
    """Which state of its folder `model` names now: the folder and its manifest file's identity (a
    model written again is renamed into place, so its manifest is another file). A cache of loaded
    models keyed by it never serves a model that has since been replaced."""
    folder = resolve(model)
    try:
        st = (folder / MANIFEST).stat()
        return str(folder.resolve()), st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size
    except OSError:  # not there (loading names why)
        return str(folder), None


def _model_id(folder: Path) -> str:
    try:
        return f" (model {json.loads((folder / MANIFEST).read_text())['model_id']})"
    except (OSError, ValueError, KeyError, TypeError):
        return ""


def refuse_existing(folder, overwrite: bool = False) -> None:
    """What a writer checks of `folder` before its work, so that a refusal comes first, not after an
    hour of training: that a model can be written there (`refuse_unwritable`) and into it (`refuse_taken`)."""
    refuse_unwritable(folder)
    refuse_taken(folder, overwrite)


def refuse_taken(folder, overwrite: bool = False) -> None:
    """Refuse to write a model into `folder` when something is there: a file; a folder holding
    anything but a model's entries (never replaced); a model, unless `overwrite` (checkpoints alone
    are an unfinished train, not a model). `save` checks it again as it writes. Never the current
    folder: a model folder is replaced whole, so the command line would be left in a folder that no
    longer exists."""
    folder = Path(folder)
    if not folder.exists():
        return
    if folder.resolve() == Path.cwd().resolve():
        raise ModelError(folder, "is the current folder; a model folder is written whole and takes the place of "
                                 "the folder there, which would leave you in a folder that no longer exists: write "
                                 "the model to a new folder (e.g. --out site-model)")
    if not folder.is_dir():
        raise ModelError(folder, "is a file, not a model folder; choose a new folder to write the model into")
    entries = sorted(p.name for p in folder.iterdir())
    other = [name for name in entries if name not in MODEL_ENTRIES]
    if other:
        raise ModelError(folder, f"holds files that are not a model's ({', '.join(other[:3])}"
                                 f"{', ...' if len(other) > 3 else ''}); a model is never written over them: "
                                 "choose a new folder")
    if not overwrite and set(entries) & {WEIGHTS, MANIFEST, CARD}:
        raise ModelError(folder, f"already holds a model{_model_id(folder)}; pass --overwrite to replace it, "
                                 "or choose a new folder")


def refuse_unwritable(folder) -> None:
    """A model is staged beside `folder` and moved into its place: refuse at once, naming why, where
    that cannot be done (a parent that is a file, a read-only file system), not after the normals
    are scored or the encoder trained."""
    parent = Path(os.path.realpath(Path(folder))).parent
    while not parent.exists():  # folders to be made by `save`
        parent = parent.parent
    if not parent.is_dir():
        raise ModelError(folder, f"cannot be made: {parent} is a file, not a folder")
    try:
        tempfile.TemporaryFile(dir=parent).close()
    except OSError as e:
        raise ModelError(folder, f"cannot be written: the folder {parent} takes no new file ({e.strerror})") from None


def refuse_source(folder, model) -> None:
    """Refuse to write a model over the one it is made from (`--overwrite` would replace the model
    that other sites' statistics, a site's calibration, or a run started from it name by its id) or
    inside it (its folder would hold another's files, travel with them, and never be replaced again)."""
    target, source = Path(folder).resolve(), resolve(model).resolve()
    if target == source:
        raise ModelError(folder, "is the model this one is made from; write the new model to a new folder")
    if source in target.parents:
        raise ModelError(folder, f"is inside the model folder this one is made from ({source}), which holds its own "
                                 "files only; write the new model to a folder of its own")


def save(folder, encoder_state: dict[str, torch.Tensor], arrays: dict[str, np.ndarray], manifest: Manifest,
         card: str, overwrite: bool = False, decoder_state: dict[str, torch.Tensor] | None = None) -> Path:
    """Write a model folder whole (weights, card, manifest signed with the site key when one is set),
    verified before it takes `folder`'s place; `overwrite` replaces a model there (`refuse_taken`).
    A writer of a loaded model passes its `decoder_state` on with the rest."""
    folder = Path(os.path.realpath(folder))  # `.` has a name there; a link's target is what gets replaced
    tensors = {f"encoder.{k}": v.detach().cpu().contiguous() for k, v in encoder_state.items()}
    tensors.update({f"reference.{k}": torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()})
    tensors.update({f"decoder.{k}": v.detach().cpu().contiguous() for k, v in (decoder_state or {}).items()})
    key = signing.site_key()
    folder.parent.mkdir(parents=True, exist_ok=True)
    with folder_lock(folder.with_name(f".{folder.name}.lock"), folder):
        leftovers.clear(folder)
        refuse_taken(folder, overwrite)  # its writer checked it was writable; its parent and lock just were
        staging = leftovers.sibling(folder, leftovers.STAGED)
        staging.mkdir()
        try:
            _write(staging / WEIGHTS, safetensors_bytes(tensors, metadata={"format_version": str(FORMAT_VERSION)}))
            _write(staging / CARD, visible(card).encode("utf-8"))  # names as the manifest writes them
            document = strict(dict(manifest.to_dict(), format_version=FORMAT_VERSION,  # sealed as written
                                   files={name: sha256(staging / name) for name in (WEIGHTS, CARD)}))
            _write(staging / MANIFEST, json.dumps(signing.seal(document, key), indent=1, allow_nan=False).encode())
            load(staging)
            _put_in_place(staging, folder)
        except OSError as e:  # a full disk: said of the model, not of the hidden folder it was staged in
            raise ModelError(folder, f"cannot be written: {e.strerror or e}") from None
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return folder


def _write(path: Path, data: bytes) -> None:
    """Write and flush to disk; the file gets the usual mode (0644 under the usual umask), as any other."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _put_in_place(staging: Path, folder: Path) -> None:
    """Rename `staging` to `folder`; an existing folder is moved aside first (put back if the rename
    fails, or Ctrl-C or SIGTERM stops the run between the two: else no model is left at `folder`)
    and removed after: readers see the old model, the new one, or for that instant none."""
    if not folder.exists():
        os.rename(staging, folder)
        return
    old = leftovers.sibling(folder, leftovers.MOVED_ASIDE)
    try:
        os.rename(folder, old)
        os.rename(staging, folder)
    except BaseException:
        if old.exists() and not folder.exists():
            os.rename(old, folder)
        raise
    shutil.rmtree(old)


def _refuse_non_finite(constant: str):
    raise ValueError(f"a non-finite number ({constant})")


def _finite(text: str) -> float:
    """A JSON number, refused where it overflows to infinity (1e999): json reads it as inf, which
    no field may hold and the seal's strict JSON cannot even be computed over."""
    value = float(text)
    if not math.isfinite(value):
        _refuse_non_finite(text)
    return value


def _whole(text: str) -> int:
    """A JSON whole number, refused where no float holds it (10**400): every field that takes a
    number reads it as a float, and would fail on it with an OverflowError."""
    value = int(text) if len(text) <= MAX_DIGITS else None
    if value is None or abs(value) > sys.float_info.max:
        raise ValueError(f"a number too large for any field ({len(text)} digits)")
    return value


def load(model: str | os.PathLike, kind: str | None = None) -> ModelFolder:
    """The model folder, after verifying version, seal, signature, hashes and the manifest's fields;
    with `kind`, a model of another kind is refused as what it is (a lung-field model given for an
    anomaly model otherwise failed on its missing encoder, as "'NoneType' object ...")."""
    folder = resolve(model)
    if folder.is_file():
        raise ModelError(folder, "is a file, not a model folder (a model is a folder holding manifest.json, "
                                 "model.safetensors and MODEL_CARD.md)")
    if not folder.is_dir():
        aside = leftovers.moved_aside(folder)
        if aside is not None:
            raise ModelError(folder, f"is missing: a write of a model into it was killed after moving the model it "
                                     f"held aside to {aside.name} beside it; rename that folder back, or the next "
                                     "write of a model to it puts it back")
        raise ModelError(folder, "is not a model folder (no such directory)")
    mpath = folder / MANIFEST
    if not mpath.is_file():
        raise ModelError(folder, f"no {MANIFEST} in the folder")
    try:
        manifest = json.loads(mpath.read_text(), parse_constant=_refuse_non_finite,
                              parse_float=_finite, parse_int=_whole)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelError(folder, f"{MANIFEST} is not valid JSON ({e})") from None
    except ValueError as e:
        raise ModelError(folder, f"{MANIFEST} holds {e}; refusing a model that would fail open") from None
    except RecursionError:
        raise ModelError(folder, f"{MANIFEST} is nested too deeply to be a manifest") from None
    if not isinstance(manifest, dict):
        raise ModelError(folder, f"{MANIFEST} is not a JSON object")
    version = manifest.get("format_version")
    if not isinstance(version, int):
        raise ModelError(folder, f"{MANIFEST} has no format_version")
    if version > FORMAT_VERSION:
        raise ModelError(folder, f"format version {version} is newer than this SSLAnomaly supports "
                                 f"({FORMAT_VERSION}); update SSLAnomaly")
    files = manifest.get("files")
    if not isinstance(files, dict) or WEIGHTS not in files:
        raise ModelError(folder, f"{MANIFEST} does not list {WEIGHTS}")
    if version < FORMAT_VERSION or signing.SEAL not in manifest:
        raise ModelError(folder, f"{MANIFEST} is not sealed by its own digest (format version {version}, from an "
                                 "older SSLAnomaly); train or calibrate the model again with this version")
    if not signing.seal_holds(manifest):
        raise ModelError(folder, f"{MANIFEST} was edited after the model was made (its digest does not match); "
                                 "refusing to load it")
    if signing.signatures_required() and not registry.is_bundled(folder):
        problem = signing.signature_problem(manifest, signing.site_key())
        if problem:
            raise ModelError(folder, f"{MANIFEST} {problem}")
    found = manifest.get("kind", ANOMALY)
    if kind is not None and found != kind:
        raise ModelError(folder, f"is {KIND_NAMES.get(found, f'a model of kind {found!r}')}, not {KIND_NAMES[kind]}")
    inside = folder.resolve()
    for name, digest in files.items():
        p = folder / name
        if Path(name).name != name or not p.is_file():
            raise ModelError(folder, f"file {name} listed in the manifest is missing")
        if p.is_symlink() or p.resolve().parent != inside or (folder / MANIFEST).is_symlink():
            raise ModelError(folder, f"{name} is a link or leads out of the model folder; a model folder is "
                                     "sealed and holds its own files only")
        if sha256(p) != digest:
            raise ModelError(folder, f"{name} does not match its SHA-256 in the manifest "
                                     "(modified, truncated or corrupted); refusing to load it")
    try:
        tensors = load_file(str(folder / WEIGHTS))
    except (SafetensorError, OSError) as e:
        raise ModelError(folder, f"{WEIGHTS} is not a readable safetensors file ({e})") from None
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ModelError(folder, f"{WEIGHTS} holds non-finite values in {name}; refusing a model that would fail open")
    check_fields(folder, manifest)
    try:
        typed = Manifest.from_dict(manifest)
    except ManifestFieldError as e:
        raise ModelError(folder, f"{MANIFEST} {e}") from None
    encoder = {k[len("encoder."):]: v for k, v in tensors.items() if k.startswith("encoder.")}
    arrays = {k[len("reference."):]: v.numpy() for k, v in tensors.items() if k.startswith("reference.")}
    decoder = {k[len("decoder."):]: v for k, v in tensors.items() if k.startswith("decoder.")}
    said = {"decoder weights": bool(decoder), "scoring.reconstruction": typed.reconstruction is not None,
            "its component statistics": RECONSTRUCTION in typed.component_stats}
    if len(set(said.values())) > 1:
        raise ModelError(folder, "is inconsistent on the reconstruction component: "
                                 + ", ".join(f"{k} {'present' if v else 'missing'}" for k, v in said.items()))
    return ModelFolder(folder, typed, encoder, arrays, decoder)


def _field(manifest: dict, path: str):
    value = manifest
    for key in path.split("."):
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def check_fields(folder, manifest: dict) -> None:
    """The fields that size memory or decide a verdict, type- and range-checked: a ModelError names
    the field. (Sealed manifests are checked too: a model made with a bad option must not load.)"""
    def refuse(path, why):
        raise ModelError(folder, f"{MANIFEST} field {path} {why}")

    size = _field(manifest, "encoder.input_size") or _field(manifest, "network.input_size")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size not in INPUT_SIZES):
        refuse("input_size", f"must be a whole number of pixels from {INPUT_SIZES[0]} to {INPUT_SIZES[-1]}, not {size!r}")
    for path in ("encoder.widths", "encoder.layers"):
        value = _field(manifest, path)
        if value is not None and not (isinstance(value, list) and len(value) == 4
                                      and all(isinstance(v, int) and 0 < v <= 2048 for v in value)):
            refuse(path, f"must be four whole numbers from 1 to 2048, not {value!r}")
    for path in ("calibration.threshold", "calibration.pixel_threshold", "calibration.false_positive_rate"):
        value = _field(manifest, path)
        if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool)):
            refuse(path, f"must be a number, not {value!r}")
    fpr = _field(manifest, "calibration.false_positive_rate")
    if fpr is not None and not 0 < fpr < 1:
        refuse("calibration.false_positive_rate", f"must be between 0 and 1, not {fpr}")
    for name, stats in (_field(manifest, "scoring.component_stats") or {}).items():
        if not (isinstance(stats, list) and len(stats) == 2 and all(isinstance(v, (int, float)) for v in stats)
                and stats[1] > 0):
            refuse(f"scoring.component_stats.{name}", f"must be [mean, spread > 0], not {stats!r}")
