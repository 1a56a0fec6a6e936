"""The package's shape: no import cycle (imports inside functions count), short module files, no
string-keyed module loading, and a command line that imports where POSIX-only modules do not exist."""

import ast
import subprocess
import sys

from conftest import REPO

PACKAGE = REPO / "SSLAnomaly" / "SSLAnomalyLib"
MAX_LINES = 400
# The core's folders from the bottom layer up: a folder imports only folders before it.
CORE_LAYERS = ("files", "reading", "model", "model_files", "anatomy", "results", "detection", "batch")
POSIX_ONLY = ("resource", "fcntl", "termios", "pwd", "grp")


def module_name(path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path, modules: set[str]) -> set[str]:
    """The package modules `path` imports anywhere in it (top level or inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            assert node.level == 0, f"{path.name}: relative import of {node.module}"
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return {m for m in found if m in modules} - {module_name(path)}


def import_graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: imported(path, set(files)) for name, path in files.items()}


def test_no_import_cycle():
    graph = import_graph()
    done, path = set(), []

    def visit(node):
        if node in path:
            raise AssertionError("import cycle: " + " -> ".join(path[path.index(node):] + [node]))
        if node in done:
            return
        path.append(node)
        for child in sorted(graph[node]):
            visit(child)
        path.pop()
        done.add(node)

    for node in sorted(graph):
        visit(node)


def test_the_core_never_imports_slicer_training_or_tooling():
    graph = import_graph()
    for name, deps in graph.items():
        if name.startswith("SSLAnomalyLib.core."):
            assert not {d for d in deps if d.startswith(("SSLAnomalyLib.training", "SSLAnomalyLib.mrml"))}, name
    for path in (PACKAGE / "core").rglob("*.py"):
        assert "import slicer" not in path.read_text(), path.name


def test_the_core_folders_import_only_layers_below_them():
    upward = []
    for name, deps in import_graph().items():
        parts = name.split(".")
        if len(parts) < 4 or parts[1] != "core":
            continue
        assert parts[2] in CORE_LAYERS, f"core/{parts[2]}/ is not a layer of test_layout.CORE_LAYERS"
        for dep in deps:
            below = dep.split(".")
            if len(below) >= 4 and below[1] == "core" and CORE_LAYERS.index(below[2]) > CORE_LAYERS.index(parts[2]):
                upward.append(f"{name} imports {dep}")
    assert not upward, upward
    assert not [p.name for p in (PACKAGE / "core").glob("*.py") if p.name != "__init__.py"], "core/ holds folders only"


def test_module_files_are_short_and_load_no_module_by_string():
    for path in [*PACKAGE.rglob("*.py"), REPO / "SSLAnomaly" / "SSLAnomaly.py"]:
        text = path.read_text()
        assert len(text.splitlines()) <= MAX_LINES, f"{path.name}: {len(text.splitlines())} lines"
        assert "import_module(" not in text and "__import__(" not in text, path.name


def test_the_command_line_imports_without_posix_only_modules():
    blocker = ("import sys\n"
               "class Block:\n"
               "    def find_spec(self, name, path=None, target=None):\n"
               f"        if name.split('.')[0] in {POSIX_ONLY!r}: raise ImportError('blocked: ' + name)\n"
               "sys.meta_path.insert(0, Block())\n"
               "for m in " + repr(POSIX_ONLY) + ": sys.modules.pop(m, None)\n"
               "import SSLAnomalyLib.cli as cli\n"
               "import SSLAnomalyLib.core.detection.detector\n"
               "cli.parser().parse_args(['detect', '--out', 'o', 'x.png'])\n"
               "assert not [m for m in sys.modules if m.startswith('SSLAnomalyLib.training.')\n"
               "            and m != 'SSLAnomalyLib.training.defaults'], 'detection imported the trainer'\n"
               "cli.parser().parse_args(['train', '--normals', 'n', '--out', 'o', '--pretext', 'mae:0.5,jigsaw'])\n"
               "print('ok')\n")
    done = subprocess.run([sys.executable, "-c", blocker], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def test_every_option_of_every_subcommand_has_help():
    import argparse

    from SSLAnomalyLib.cli import parser

    sub = next(a for a in parser()._actions if isinstance(a, argparse._SubParsersAction))
    silent = [f"{name} {a.option_strings or a.dest}" for name, p in sub.choices.items() for a in p._actions
              if not a.help and not isinstance(a, argparse._HelpAction)]
    assert not silent, silent
