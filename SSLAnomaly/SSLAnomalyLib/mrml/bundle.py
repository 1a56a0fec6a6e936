"""Scene bundles (`.mrb`): saving and loading the scene, and one case as a bundle for the CLI
(`sslanomaly detect --mrb`), made through real MRML so that it opens in desktop Slicer."""

from __future__ import annotations

import contextlib
import zipfile
from pathlib import Path

import slicer

from SSLAnomalyLib.core.files.staging import staged_files
from SSLAnomalyLib.core.results.outputs import case_name
from SSLAnomalyLib.mrml.case import show_detection
from SSLAnomalyLib.mrml.headless import HeadlessSlicer, is_desktop_slicer, start_headless_app
from SSLAnomalyLib.mrml.volumes import radiograph_to_volume_node


def save_scene_bundle(path) -> Path:
    """The whole scene as a `.mrb` at `path` (replaced if it exists: callers stage the file)."""
    if not slicer.mrmlScene.WriteToMRB(str(path)):
        raise OSError(f"{path}: Slicer could not write the scene bundle")
    return Path(path)


def load_scene_bundle(path) -> None:
    """Replace the scene's content by a `.mrb` (e.g. a saved review). A file that is not a scene
    bundle is refused before the scene is cleared, so the current (unsaved) review is kept."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: no such scene bundle")
    if not _holds_a_scene(path):
        raise OSError(f"{path}: not a Slicer scene bundle (a zip archive holding a .mrml scene); "
                      "the current scene is kept")
    if not slicer.mrmlScene.ReadFromMRB(str(path), True):
        raise OSError(f"{path}: Slicer could not read the scene bundle")


def _holds_a_scene(path) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith(".mrml") for name in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def write_mrb(radiograph, result, path, overwrite: bool = False) -> Path:
    """One case as a scene bundle: the image volume, the heatmap with its colour node as the
    foreground layer, one finding ROI each and the findings table. Built in a private headless
    scene, so that nothing else in the process is touched; outside desktop Slicer only."""
    path = Path(path)
    with _private_scene():
        volume = radiograph_to_volume_node(radiograph, case_name(radiograph.source or path.name))
        show_detection(volume, result)
        with staged_files({"mrb": path}, overwrite) as staged:
            save_scene_bundle(staged["mrb"])
    return path


@contextlib.contextmanager
def _private_scene():
    """A fresh headless application installed for the duration; the previous one after."""
    if is_desktop_slicer():
        raise RuntimeError("write_mrb builds its own scene and is for use outside Slicer; in Slicer use export_case")
    previous = start_headless_app()
    try:
        with HeadlessSlicer() as private:
            yield private.install()
    finally:
        previous.install()
