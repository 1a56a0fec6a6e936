"""A headless Slicer application on the `slicer-core` wheel, so that the module's Logic and the mrml
glue run unchanged outside desktop Slicer (tests, `sslanomaly detect --mrb`, batch servers).

Desktop Slicer builds all of this itself; the wheel only has the classes. What the glue relies on:
a scene with a data-I/O manager (scene bundles need its cache folder), an application logic, the
colour logic (which adds the default colour nodes), the module logics it calls through
`slicer.modules.<name>.logic()`, and one slice logic per view so that slice composite nodes exist.
The process's application is closed at exit, before Python's final garbage collection frees these
objects in no particular order (a colour logic freed after the slice logics but before the scene
was emptied crashed the interpreter at exit).
"""

from __future__ import annotations

import atexit
import os
import tempfile
import types
from pathlib import Path

import slicer
import vtk

MODULE_LOGICS = {  # module name -> logic class in the wheel
    "Volumes": "vtkSlicerVolumesLogic",
    "Markups": "vtkSlicerMarkupsLogic",
    "Segmentations": "vtkSlicerSegmentationsModuleLogic",
    "Tables": "vtkSlicerTablesLogic",
    "SubjectHierarchy": "vtkSlicerSubjectHierarchyModuleLogic",
}
SLICE_VIEWS = {"Red": "Axial", "Green": "Coronal", "Yellow": "Sagittal"}  # as in desktop layouts

_installed: "HeadlessSlicer | None" = None


class HeadlessSlicer:
    """One MRML scene with the logics desktop Slicer would give it. Creating one does not touch the
    `slicer` namespace; `install()` makes it the process's `slicer.mrmlScene` and `slicer.modules`.
    An application made for a while (a second scene) is closed after use, e.g. `with HeadlessSlicer()
    as app:`: dropping a scene that still holds a loaded bundle without clearing it crashes VTK."""

    def __init__(self):
        self.scene = slicer.vtkMRMLScene()
        self._cache_dir = tempfile.TemporaryDirectory(prefix="sslanomaly-mrml-")
        cache = slicer.vtkCacheManager()
        cache.SetRemoteCacheDirectory(self._cache_dir.name)
        io_manager = slicer.vtkDataIOManager()
        io_manager.SetCacheManager(cache)
        self.scene.SetCacheManager(cache)
        self.scene.SetDataIOManager(io_manager)

        self.app_logic = slicer.vtkSlicerApplicationLogic()
        self.app_logic.SetMRMLScene(self.scene)
        self._set_colour_files_folder()
        colors = slicer.vtkSlicerColorLogic()
        colors.SetMRMLApplicationLogic(self.app_logic)
        self.app_logic.SetModuleLogic("Colors", colors)
        colors.SetMRMLScene(self.scene)  # adds the default colour nodes (do not add them again)
        self.logics = {"Colors": colors}
        for name, class_name in MODULE_LOGICS.items():
            logic = getattr(slicer, class_name)()
            logic.SetMRMLApplicationLogic(self.app_logic)
            logic.SetMRMLScene(self.scene)
            self.app_logic.SetModuleLogic(name, logic)
            self.logics[name] = logic

        self.slice_logics = {}
        collection = vtk.vtkCollection()
        for view, orientation in SLICE_VIEWS.items():
            logic = slicer.vtkMRMLSliceLogic()
            logic.SetMRMLApplicationLogic(self.app_logic)
            logic.SetMRMLScene(self.scene)
            logic.AddSliceNode(view).SetOrientation(orientation)
            collection.AddItem(logic)
            self.slice_logics[view] = logic
        self.app_logic.SetSliceLogics(collection)

    def _set_colour_files_folder(self) -> None:
        """The colour logic reads Slicer's colour files from <home>/<share>/ColorFiles and reports an
        error per application when no home is set. The wheel ships no colour files (the module makes
        its own colour node), so it is given an empty folder of its own: no error, nothing loaded."""
        Path(self._cache_dir.name, "share", "ColorFiles").mkdir(parents=True)
        self.app_logic.SetHomeDirectory(self._cache_dir.name)
        self.app_logic.SetShareDirectory("share")

    def close(self) -> None:
        """Empty the scene, singletons included, so that it can be released safely."""
        self.scene.Clear(1)

    def __enter__(self) -> "HeadlessSlicer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def install(self) -> "HeadlessSlicer":
        """Make this the scene and module logics that `slicer.util` and the glue find."""
        global _installed
        slicer.mrmlScene = self.scene
        slicer.modules = types.SimpleNamespace(**{
            name.lower(): types.SimpleNamespace(logic=(lambda lg=logic: lg)) for name, logic in self.logics.items()})
        _installed = self
        return self


def is_desktop_slicer() -> bool:
    """True inside the Slicer application, whose Qt classes the wheel does not have (a test harness
    may stand in for `slicer.app`, so that is not the test)."""
    return hasattr(slicer, "qSlicerApplication")


def start_headless_app() -> HeadlessSlicer | None:
    """The process's headless application, created and installed on first call; None inside desktop
    Slicer, whose own application is used instead."""
    if is_desktop_slicer():
        return None
    if _installed is None:
        atexit.register(HeadlessSlicer().install().close)
    return _installed


def application_logic():
    """The running application logic: desktop Slicer's, or the headless one (started if needed)."""
    if is_desktop_slicer():
        return slicer.app.applicationLogic()
    return start_headless_app().app_logic


def app_data_folder() -> Path:
    """Where the module keeps its own files for the user: desktop Slicer's application data folder,
    else the XDG data folder (~/.local/share unless XDG_DATA_HOME says otherwise)."""
    if is_desktop_slicer():
        import qt

        return Path(qt.QStandardPaths.writableLocation(qt.QStandardPaths.AppDataLocation), "SSLAnomaly")
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share", "SSLAnomaly")
