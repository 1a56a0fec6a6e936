"""Scene bundles (`.mrb`): saving and loading the scene, one case of the scene as a bundle (the export), and
one case as a bundle for the CLI (`sslanomaly detect --mrb`), made through real MRML so that it opens in
desktop Slicer."""

from __future__ import annotations

import contextlib
import threading
import zipfile
import zlib
from pathlib import Path
from xml.etree import ElementTree

import slicer

from SSLAnomalyLib.core.files.staging import staged_files
from SSLAnomalyLib.core.results.outputs import case_name
from SSLAnomalyLib.mrml.case import show_detection
from SSLAnomalyLib.mrml.clones import derived_nodes
from SSLAnomalyLib.mrml.headless import HeadlessSlicer, is_desktop_slicer, start_headless_app
from SSLAnomalyLib.mrml.heatmap import heatmap_node, slice_composite_nodes
from SSLAnomalyLib.mrml.volumes import radiograph_to_volume_node

# What a scene needs besides its data (none a patient's): views, their layers and cameras, layout, colour tables
SCENE_SETUP = ("vtkMRMLAbstractViewNode", "vtkMRMLSliceCompositeNode", "vtkMRMLCameraNode", "vtkMRMLLayoutNode",
               "vtkMRMLSelectionNode", "vtkMRMLInteractionNode", "vtkMRMLCrosshairNode", "vtkMRMLColorNode")
# The private scene is installed as the process's one `slicer.mrmlScene`: the batch's writer threads take turns
_PRIVATE_SCENE = threading.Lock()


def save_scene_bundle(path) -> Path:
    """The whole scene as a `.mrb` at `path` (replaced if it exists: callers stage the file)."""
    with _data_file_names_without_ampersand():
        if not slicer.mrmlScene.WriteToMRB(str(path)):
            raise OSError(f"{path}: Slicer could not write the scene bundle")
    return Path(path)


def save_new_scene_bundle(path) -> Path:
    """The whole scene as a new `.mrb` at `path` (the Logic's saveScene). A folder that is missing is made, as the
    export makes its own and Slicer's Save dialog offers to (Slicer itself failed there, saying nothing of why); an
    existing file is not replaced, and a folder path through a file is refused naming it. Written beside the target
    and moved into place, so a save that fails leaves nothing at `path`."""
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"not overwriting {path}")
    with staged_files({"mrb": path}) as staged:
        save_scene_bundle(staged["mrb"])
    return path


@contextlib.contextmanager
def _data_file_names_without_ampersand():
    """Slicer names a node's data file in the bundle after its storage node's file, else after the node, and writes
    that name into the scene file with a bare '&' (Slicer issue #3945): a finding relabelled 'mass & effusion', or a
    volume named from a DICOM series 'CHEST PA & LAT', made a bundle Slicer cannot read. Such a node's data file is
    named with '_' for '&' while the bundle is written; node names, which the scene file holds escaped, are kept."""
    renamed = []
    for node in _scene_nodes():
        if not node.IsA("vtkMRMLStorableNode") or not node.GetSaveWithScene():
            continue
        storage = node.GetStorageNode()
        given = storage.GetFileName() if storage is not None else None
        if "&" not in Path(given or node.GetName()).name:
            continue
        if storage is None:  # Slicer would make it as the bundle is written, and keep it: the same
            storage = node.CreateDefaultStorageNode()
            slicer.mrmlScene.AddNode(storage)
            node.SetAndObserveStorageNodeID(storage.GetID())
        file_name = Path(given or f"{node.GetName()}.{storage.GetDefaultWriteFileExtension()}")
        storage.SetFileName(str(file_name.with_name(file_name.name.replace("&", "_"))))
        renamed.append((storage, given))
    try:
        yield
    finally:
        for storage, given in renamed:
            storage.SetFileName(given or "")  # as Slicer leaves the storage nodes it makes for a bundle


def save_case_bundle(path, volume_node) -> Path:
    """One case of the scene as a `.mrb` at `path`: its volume (and the transforms it is under), the nodes
    detection made for it, and what a scene needs to show them (views, colour tables), the slice views on
    it. Every other node is left out of the file, not the scene: a case's bundle is sent to others, and
    another patient's image, findings, review or subject-hierarchy entry (patient name) must not go along."""
    case = [volume_node, *derived_nodes(slicer.mrmlScene, volume_node)]
    transform = volume_node.GetParentTransformNode()
    while transform is not None:
        case.append(transform)
        transform = transform.GetParentTransformNode()
    kept = [node for node in _scene_nodes() if any(node.IsA(c) for c in SCENE_SETUP)] + case
    kept_ids = {part.GetID() for node in kept for part in (node, *_parts(node))}
    left_out = [node for node in _scene_nodes() if node.GetID() not in kept_ids and node.GetSaveWithScene()]
    heat = heatmap_node(volume_node)
    views = [(c, c.GetBackgroundVolumeID(), c.GetForegroundVolumeID()) for c in slice_composite_nodes()]
    try:
        for node in left_out:
            node.SetSaveWithScene(False)
        for composite, _, _ in views:
            composite.SetBackgroundVolumeID(volume_node.GetID())
            composite.SetForegroundVolumeID(heat.GetID() if heat is not None else None)
        return save_scene_bundle(path)
    finally:
        for node in left_out:
            node.SetSaveWithScene(True)
        for composite, background, foreground in views:
            composite.SetBackgroundVolumeID(background)
            composite.SetForegroundVolumeID(foreground)


def _scene_nodes() -> list:
    scene = slicer.mrmlScene
    return [scene.GetNthNode(i) for i in range(scene.GetNumberOfNodes())]


def _parts(node) -> list:
    """A node's display and storage nodes, saved with it."""
    displays = range(node.GetNumberOfDisplayNodes()) if node.IsA("vtkMRMLDisplayableNode") else ()
    storages = range(node.GetNumberOfStorageNodes()) if node.IsA("vtkMRMLStorableNode") else ()
    return [node.GetNthDisplayNode(i) for i in displays] + [node.GetNthStorageNode(i) for i in storages]


def load_scene_bundle(path) -> None:
    """Replace the scene's content by a `.mrb` (e.g. a saved review). A file that is not a scene
    bundle is refused before the scene is cleared, so the current (unsaved) review is kept."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: no such scene bundle")
    problem = _scene_problem(path)
    if problem:
        raise OSError(f"{path}: {problem}; the current scene is kept")
    if not slicer.mrmlScene.ReadFromMRB(str(path), True):
        raise OSError(f"{path}: Slicer could not read the scene bundle")


def _scene_problem(path) -> str | None:
    """Why Slicer could not read `path` as a scene bundle, or None. Checked before the scene is cleared: Slicer
    clears it first, so a bundle whose scene file it cannot parse (e.g. one written with a bare '&', see
    `_data_file_names_without_ampersand`) left the reader with an empty scene, the unsaved review gone from it."""
    try:
        with zipfile.ZipFile(path) as archive:
            scenes = [name for name in archive.namelist() if name.endswith(".mrml")]
            if not scenes:
                return "not a Slicer scene bundle (a zip archive holding a .mrml scene)"
            for name in scenes:
                with archive.open(name) as scene:
                    ElementTree.parse(scene)
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error):  # a damaged archive or member
        return "not a Slicer scene bundle (a zip archive holding a .mrml scene)"
    except ElementTree.ParseError as e:
        return f"its scene file {name} is not readable XML ({e}), so Slicer cannot load it"
    return None


def write_mrb(radiograph, result, path, overwrite: bool = False) -> Path:
    """One case as a scene bundle: the image volume, the heatmap with its colour node as the
    foreground layer, one finding ROI each and the findings table. Built in a private headless
    scene, so that nothing else in the process is touched; outside desktop Slicer only. One bundle at a
    time: two threads each installing their scene put one case's image in the other's bundle."""
    path = Path(path)
    with _PRIVATE_SCENE, _private_scene():
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
