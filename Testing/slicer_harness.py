"""Running the Slicer module file outside desktop Slicer, on real MRML from the slicer-core wheel.

Stand-ins exist only for what the wheel lacks: Slicer's Python base classes (`ScriptedLoadableModule`
and friends, `parameterNodeWrapper`), the translation functions of `slicer.i18n` (identity) and the Qt modules (`qt`, `ctk`) that the module imports but
only its widget uses. Everything the Logic touches (scene, nodes, storage, module logics) is real.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
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
    """Fields with their defaults, held on the wrapper (the real one mirrors them into the node);
    the GUI connection is a no-op, as there is no GUI."""

    def __init__(self, node):
        self.parameterNode = node
        for name in cls.__annotations__:
            setattr(self, name, getattr(cls, name, None))

    cls.__init__ = __init__
    cls.connectGui = lambda self, ui: None
    cls.disconnectGui = lambda self, tag: None
    return cls


def Choice(values):
    return values


def WithinRange(low, high):
    return (low, high)


@lru_cache(maxsize=None)
def install_stand_ins() -> None:
    """Put the stand-ins where the module file imports them from, and start the headless app."""
    import slicer

    from SSLAnomalyLib.mrml.headless import start_headless_app

    start_headless_app()
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
    return module
