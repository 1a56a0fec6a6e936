"""Running the Slicer module file outside desktop Slicer, on real MRML from the slicer-core wheel.

Stand-ins exist only for what the wheel lacks: Slicer's Python base classes (`ScriptedLoadableModule`
and friends, `parameterNodeWrapper`), the translation functions of `slicer.i18n` (identity), the Qt
modules (`qt`, `ctk`) that the module imports but only its widget uses, and the part of `slicer.app`
that `slicer.util.getModuleLogic` asks (its module manager), so that console code runs as written.
Everything the Logic touches (scene, nodes, storage, module logics) is real. The user's data folder
(reviews are autosaved there) is a temporary one, so that tests never write into the home folder.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
import tempfile
import types
import unittest
from functools import lru_cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODULE_FILE = REPO / "SSLAnomaly" / "SSLAnomaly.py"


class ScriptedLoadableModule:
    def __init__(self, parent):
        self.parent = parent


class ScriptedLoadableModuleWidget:
    def __init__(self, parent=None):
        self.parent = parent


class ScriptedLoadableModuleLogic:
    def getParameterNode(self):
        """Slicer's behaviour: one scripted-module node per module, a singleton of the scene."""
        import slicer

        node = slicer.mrmlScene.GetSingletonNode("SSLAnomaly", "vtkMRMLScriptedModuleNode")
        if node is None:
            node = slicer.vtkMRMLScriptedModuleNode()
            node.SetSingletonTag("SSLAnomaly")
            node.SetName("SSLAnomaly")
            node = slicer.mrmlScene.AddNode(node)
        return node


class ScriptedLoadableModuleTest(unittest.TestCase):
    def delayDisplay(self, message, msec=0):
        logging.info(message)


def parameterNodeWrapper(cls):
    """Fields kept in the scripted module node as the real wrapper keeps them (a node-typed field,
    the one without a default, as a node reference; the others as parameters read back with their
    default's type), so that they are saved with the scene; the GUI connection is a no-op, observers
    are the node's."""

    def field(name, default):
        def get(self):
            node = self.parameterNode
            if default is None:
                return node.GetNodeReference(name)
            if not node.HasParameter(name):
                return default
            text = node.GetParameter(name)
            return text == "true" if isinstance(default, bool) else type(default)(text)

        def put(self, value):
            if default is None:
                self.parameterNode.SetNodeReferenceID(name, value.GetID() if value is not None else None)
            else:
                self.parameterNode.SetParameter(name, str(value).lower() if isinstance(value, bool) else str(value))

        return property(get, put)

    def __init__(self, node):
        self.parameterNode = node

    for name in cls.__annotations__:
        setattr(cls, name, field(name, getattr(cls, name, None)))
    cls.__init__ = __init__
    cls.connectGui = lambda self, ui: None
    cls.disconnectGui = lambda self, tag: None
    cls.AddObserver = lambda self, *args: self.parameterNode.AddObserver(*args)  # as the real wrapper: the panel
    cls.RemoveObserver = lambda self, tag: self.parameterNode.RemoveObserver(tag)  # follows its node's changes
    return cls


def Choice(values):
    return values


def WithinRange(low, high):
    return (low, high)


class ModuleManager:
    """What `slicer.util.getModule` asks of `slicer.app.moduleManager()`: a loaded module by name."""

    def __init__(self):
        self.modules = {}

    def module(self, name):
        return self.modules.get(name)


class LoadedModule:
    """A loaded scripted module as `slicer.util.getModuleLogic` sees it: one logic for the session
    (desktop Slicer's is the one its panel made, which the console shares)."""

    def __init__(self, name: str, logic_class):
        self.name, self._logic_class, self._logic = name, logic_class, None

    def logic(self):
        if self._logic is None:
            self._logic = self._logic_class()
        return self._logic


class qSlicerScriptedLoadableModule:
    """Desktop Slicer's scripted-module class, which `getModuleLogic` tests for (its logic then comes
    from the module's widget, which needs Qt); `LoadedModule` is not one, so `logic()` is asked."""


@lru_cache(maxsize=None)
def install_stand_ins() -> None:
    """Put the stand-ins where the module file imports them from, and start the headless app."""
    import slicer

    from SSLAnomalyLib.mrml.headless import start_headless_app

    os.environ["XDG_DATA_HOME"] = tempfile.mkdtemp(prefix="sslanomaly-userdata-")
    start_headless_app()
    manager = ModuleManager()
    slicer.app = types.SimpleNamespace(moduleManager=lambda: manager)
    slicer.qSlicerScriptedLoadableModule = qSlicerScriptedLoadableModule
    modules = {
        "slicer.ScriptedLoadableModule": dict(
            ScriptedLoadableModule=ScriptedLoadableModule, ScriptedLoadableModuleWidget=ScriptedLoadableModuleWidget,
            ScriptedLoadableModuleLogic=ScriptedLoadableModuleLogic, ScriptedLoadableModuleTest=ScriptedLoadableModuleTest),
        "slicer.parameterNodeWrapper": dict(parameterNodeWrapper=parameterNodeWrapper, Choice=Choice,
                                            WithinRange=WithinRange),
        "slicer.i18n": dict(tr=lambda text: text, translate=lambda context, text: text),
        "qt": {}, "ctk": {}}
    for name, content in modules.items():
        module = types.ModuleType(name)
        module.__dict__.update(content)
        sys.modules[name] = module
        if name.startswith("slicer."):
            setattr(slicer, name.split(".", 1)[1], module)


@lru_cache(maxsize=None)
def load_module_file(path: Path = MODULE_FILE):
    """Import a Slicer module file (SSLAnomaly.py, or a test under SSLAnomaly/Testing/Python)."""
    install_stand_ins()
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    if hasattr(module, f"{path.stem}Logic"):  # a module (not a test file): loaded as Slicer loads it
        getattr(module, path.stem)(types.SimpleNamespace())
        slicer_app_modules()[path.stem] = LoadedModule(path.stem, getattr(module, f"{path.stem}Logic"))
    return module


def slicer_app_modules() -> dict:
    import slicer

    return slicer.app.moduleManager().modules
