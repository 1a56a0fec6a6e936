"""Static checks of the extension: what desktop Slicer would only reveal when the module loads or
the extension is packaged. The .ui holds every widget the panel uses, with a class that has what
the code calls; the CMake lists name every file Slicer must install; the dependency lists agree."""

from __future__ import annotations

import ast
import re
import subprocess
import tomllib
import xml.etree.ElementTree as ET

from conftest import REPO

MODULE = REPO / "SSLAnomaly"
MODULE_FILE = MODULE / "SSLAnomaly.py"
UI_FILE = MODULE / "Resources" / "UI" / "SSLAnomaly.ui"
GENERIC = {"enabled", "visible", "toolTip", "blockSignals"}  # every QWidget has these
FITTING = {  # member the widget uses -> classes that have it
    "clicked": {"QPushButton", "QToolButton", "QCheckBox"}, "toggled": {"QCheckBox", "QPushButton"},
    "currentIndexChanged": {"QComboBox"}, "addItem": {"QComboBox"}, "itemData": {"QComboBox"},
    "setCurrentIndex": {"QComboBox"}, "count": {"QComboBox"},
    "clear": {"QComboBox", "QPlainTextEdit", "QLineEdit"},
    "valueChanged": {"ctkSliderWidget", "QDoubleSpinBox", "QSpinBox"},
    "minimum": {"ctkSliderWidget", "QDoubleSpinBox", "QSpinBox"},
    "maximum": {"ctkSliderWidget", "QDoubleSpinBox", "QSpinBox"},
    "value": {"ctkSliderWidget", "QDoubleSpinBox", "QSpinBox", "QProgressBar"},
    "setRange": {"QProgressBar", "QDoubleSpinBox", "QSpinBox"}, "setFormat": {"QProgressBar"},
    "text": {"QLabel", "QLineEdit", "QPushButton", "QCheckBox"},
    "currentPath": {"ctkPathLineEdit"},
    "setMRMLTableNode": {"qMRMLTableView"}, "selectionModel": {"qMRMLTableView"},
    "appendPlainText": {"QPlainTextEdit"},
}
PARAMETER_WIDGETS = {  # widget classes the parameter node wrapper can connect
    "qMRMLNodeComboBox", "QComboBox", "ctkSliderWidget", "QCheckBox", "ctkPathLineEdit", "QDoubleSpinBox"}


def ui_widgets() -> dict[str, ET.Element]:
    return {w.get("name"): w for w in ET.parse(UI_FILE).iter("widget")}


def test_ui_top_widget_is_a_qmrmlwidget():
    top = ET.parse(UI_FILE).getroot().find("widget")
    assert top.get("class") == "qMRMLWidget", f"the top widget of {UI_FILE.name} must be a qMRMLWidget"


def test_every_ui_widget_the_code_uses_exists_with_a_fitting_class():
    widgets = ui_widgets()
    uses = set(re.findall(r"self\.ui\.(\w+)(?:\.(\w+))?", MODULE_FILE.read_text()))
    assert uses, "the widget uses no self.ui members: is the pattern out of date?"
    problems = []
    for name, member in sorted(uses):
        if name not in widgets:
            problems.append(f"self.ui.{name} is not in {UI_FILE.name}")
        elif member and member not in GENERIC:
            if member not in FITTING:
                problems.append(f"self.ui.{name}.{member}: add '{member}' to FITTING with the classes that have it")
            elif widgets[name].get("class") not in FITTING[member]:
                problems.append(f"self.ui.{name} is a {widgets[name].get('class')}, which has no '{member}'")
    assert not problems, "\n".join(problems)


def parameter_node_fields() -> list[ast.AnnAssign]:
    tree = ast.parse(MODULE_FILE.read_text())
    node_class = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "SSLAnomalyParameterNode")
    return [s for s in node_class.body if isinstance(s, ast.AnnAssign)]


def test_parameter_names_in_the_ui_are_fields_of_the_parameter_node():
    fields = {s.target.id for s in parameter_node_fields()}
    bound = {}
    for name, widget in ui_widgets().items():
        for prop in widget.findall("property"):
            if prop.get("name") == "SlicerParameterName":
                bound[name] = (prop.find("string").text, widget.get("class"))
    problems = [f"{w} is bound to '{p}', which SSLAnomalyParameterNode does not have" for w, (p, _) in bound.items()
                if p not in fields]
    problems += [f"{w} is a {c}, which the parameter node cannot connect" for w, (_, c) in bound.items()
                 if c not in PARAMETER_WIDGETS]
    assert bound and not problems, "\n".join(problems)


def parameter_defaults() -> dict[str, object]:
    return {s.target.id: ast.literal_eval(s.value) for s in parameter_node_fields() if isinstance(s.value, ast.Constant)}


def test_the_ui_shows_the_parameter_nodes_defaults_and_the_panel_trains_by_refitting():
    """A spin box or check box the .ui sets otherwise than the parameter node would show one thing and
    run another until the node is first written. Training defaults to a refit of the selected model
    (docs/model.md, round 18; README, "Train on your own normals")."""
    defaults, problems = parameter_defaults(), []
    for name, widget in ui_widgets().items():
        props = {p.get("name"): p for p in widget.findall("property")}
        if "SlicerParameterName" not in props:
            continue
        field = props["SlicerParameterName"].find("string").text
        if widget.get("class") == "QCheckBox":
            shown = "checked" in props and props["checked"].find("bool").text == "true"
        elif widget.get("class") == "QDoubleSpinBox" and "value" in props:
            shown = float(props["value"].find("double").text)
        else:
            continue
        if shown != defaults[field]:
            problems.append(f"{name} shows {shown!r}, the parameter node's {field} defaults to {defaults[field]!r}")
    assert not problems, "\n".join(problems)
    assert defaults["trainMinutes"] == 0 and defaults["trainFromSelectedModel"] is True


def cmake_list(cmake_file, variable: str) -> list[str]:
    text = cmake_file.read_text()
    body = re.search(rf"set\(\s*{variable}\s+(.*?)\)", text, re.S)
    assert body, f"{cmake_file} sets no {variable}"
    module_name = re.search(r"set\(MODULE_NAME\s+(\w+)\)", text)
    items = [line.split("#")[0].strip() for line in body.group(1).splitlines()]
    return [i.replace("${MODULE_NAME}", module_name.group(1) if module_name else "") for i in items if i]


def files_slicer_installs() -> set[str]:
    """Every file under SSLAnomaly/ that git tracks or would track, except the build and test
    files (tests are listed in Testing/Python/CMakeLists.txt, checked below)."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "SSLAnomaly"],
                            cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    files = {str((REPO / f).relative_to(MODULE)) for f in listed if (REPO / f).is_file()}
    return {f for f in files if not f.startswith("Testing/") and not f.endswith("CMakeLists.txt")}


def test_module_cmake_lists_every_file_slicer_installs():
    cmake = MODULE / "CMakeLists.txt"
    scripts = cmake_list(cmake, "MODULE_PYTHON_SCRIPTS")
    resources = cmake_list(cmake, "MODULE_PYTHON_RESOURCES")
    tree = files_slicer_installs()
    problems = [f"missing from MODULE_PYTHON_SCRIPTS in SSLAnomaly/CMakeLists.txt: {f}"
                for f in sorted(f for f in tree - set(scripts) if f.endswith(".py"))]
    problems += [f"missing from MODULE_PYTHON_RESOURCES in SSLAnomaly/CMakeLists.txt: {f}"
                 for f in sorted(f for f in tree - set(resources) if not f.endswith(".py"))]
    problems += [f"listed in SSLAnomaly/CMakeLists.txt but not in the tree: {f}"
                 for f in sorted(set(scripts + resources) - tree)]
    problems += [f"listed twice in SSLAnomaly/CMakeLists.txt: {f}" for f in sorted(set(scripts + resources))
                 if (scripts + resources).count(f) > 1]
    assert not problems, "\n".join(problems)


def test_in_slicer_tests_are_registered_with_ctest():
    registered = re.findall(r"slicer_add_python_unittest\(\s*SCRIPT\s+(\S+?)\s*\)",
                            (MODULE / "Testing" / "Python" / "CMakeLists.txt").read_text())
    present = sorted(p.name for p in (MODULE / "Testing" / "Python").glob("*.py"))
    assert sorted(registered) == present, f"registered {sorted(registered)}, present {present}"
    assert "slicer_add_python_unittest(SCRIPT ${MODULE_NAME}.py)" in (MODULE / "CMakeLists.txt").read_text()


def test_extension_depends_on_pytorch_and_both_descriptions_agree():
    cmake = (REPO / "CMakeLists.txt").read_text()
    s4ext = dict(line.split(" ", 1) for line in (REPO / "SSLAnomaly.s4ext").read_text().splitlines()
                 if line.strip() and not line.startswith("#"))
    settings = dict(re.findall(r'set\((EXTENSION_\w+)\s+"(.*?)"\)', cmake))
    assert settings["EXTENSION_DEPENDS"] == s4ext["depends"] == "PyTorch"
    for key in ("homepage", "category", "contributors", "description", "iconurl", "screenshoturls"):
        assert settings[f"EXTENSION_{key.upper()}"] == s4ext[key], f"{key} differs between CMakeLists.txt and .s4ext"
    assert "add_subdirectory(SSLAnomaly)" in cmake


def test_requirements_are_the_package_dependencies_slicer_lacks():
    """Slicer gets the package's dependencies from requirements.txt, except torch (PyTorch
    extension) and SimpleITK and numpy (Slicer's own, never replaced)."""
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    required = [line.strip() for line in (MODULE / "Resources" / "requirements.txt").read_text().splitlines()
                if line.strip() and not line.startswith("#")]

    def name(requirement):
        return re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].lower()

    expected = sorted(r for r in declared if name(r) not in {"torch", "simpleitk", "numpy"})
    assert sorted(required) == expected


CATALOG_SCHEMA = {  # the rules of Slicer's slicer-extension-catalog-entry-schema-v1.0.2.json
    "type": "object", "required": ["$schema", "category", "scm_url"], "additionalProperties": False,
    "properties": {
        "$schema": {"type": "string"}, "category": {"type": "string"}, "scm_url": {"type": "string"},
        "scm_revision": {"type": "string"}, "scm_type": {"enum": ["git", "local"]},
        "build_dependencies": {"type": "array", "items": {"type": "string"}},
        "dicom_support_rule": {"type": "string"}, "build_subdirectory": {"type": "string"},
        "enabled": {"type": "boolean"}, "tier": {"type": "integer", "minimum": 1, "maximum": 5}}}


def s4ext() -> dict:
    return dict(line.split(" ", 1) for line in (REPO / "SSLAnomaly.s4ext").read_text().splitlines()
                if line.strip() and not line.startswith("#"))


def test_catalog_entry_is_valid_and_agrees_with_the_s4ext():
    import json

    import jsonschema

    entry = json.loads((REPO / "SSLAnomaly.json").read_text())
    jsonschema.validate(entry, CATALOG_SCHEMA)
    assert entry["$schema"].endswith("/Schemas/slicer-extension-catalog-entry-schema-v1.0.2.json#")
    old = s4ext()
    assert (entry["scm_url"], entry["scm_revision"], entry["build_subdirectory"], entry["category"]) == (
        old["scmurl"], old["scmrevision"], old["build_subdirectory"], old["category"])
    assert entry["build_dependencies"] == old["depends"].split() and entry["enabled"] == (old["enabled"] == "1")
    assert "tier" in entry


def test_contributors_are_named_with_their_organisation():
    import types

    from slicer_harness import load_module_file

    name_org = re.compile(r"[^(),]+ \([^()]+\)")
    parent = types.SimpleNamespace()
    load_module_file().SSLAnomaly(parent)
    cmake = dict(re.findall(r'set\((EXTENSION_\w+)\s+"(.*?)"\)', (REPO / "CMakeLists.txt").read_text()))
    for where, text in (("module", ", ".join(parent.contributors)), (".s4ext", s4ext()["contributors"]),
                        ("CMakeLists.txt", cmake["EXTENSION_CONTRIBUTORS"])):
        assert all(name_org.fullmatch(c.strip()) for c in text.split(",")), f"{where}: '{text}' is not 'Name (Org)'"


def test_license_is_the_full_apache_2_text_pyproject_names():
    text = (REPO / "LICENSE").read_text()
    assert tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["license"] == "Apache-2.0"
    assert "Apache License" in text.splitlines()[1] and "Version 2.0, January 2004" in text
    for heading in ("1. Definitions.", "2. Grant of Copyright License.", "3. Grant of Patent License.",
                    "4. Redistribution.", "9. Accepting Warranty or Additional Liability.", "END OF TERMS AND CONDITIONS"):
        assert heading in text, f"LICENSE lacks '{heading}'"
    assert len(text) > 10000


def test_readme_and_model_cards_state_the_licences_of_the_data_behind_the_weights():
    import json

    from SSLAnomalyLib.core.model_files.manifest import Manifest
    from SSLAnomalyLib.core.model_files.model_card import model_card

    readme = (REPO / "README.md").read_text()
    licences = readme.split("**Licences of the data behind the bundled models.**", 1)[1].split("**Panel**", 1)[0]
    expected = {"adult": ("NIH ChestX-ray14", "NIH Clinical Center", "RSNA", "non-commercial", "Kermany", "CC BY 4.0",
                          "OpenIST", "licence unclear"),
                "pediatric": ("Kermany", "CC BY 4.0", "OpenIST", "licence unclear"),
                "lungs": ("OpenIST", "licence unclear")}
    for name, terms in expected.items():
        folder = MODULE / "Resources" / "Models" / name
        card = (folder / "MODEL_CARD.md").read_text()
        assert "Data licences" in card, f"the {name} model card has no Data licences section"
        section = re.split(r"\n(?:## |\*\*)", card.split("Data licences", 1)[1], maxsplit=1)[0]
        assert all(term in section for term in terms), f"{name}: {section}"
        assert all(term in licences for term in terms), f"the README's licences lack one of {terms}"
        if name != "lungs":  # the detectors' cards are written by core/model_files/model_card.py: a rebuilt card keeps it
            regenerated = model_card(Manifest.from_dict(json.loads((folder / "manifest.json").read_text())))
            assert "## Data licences" in regenerated and "OpenIST" in regenerated.split("## Data licences", 1)[1]
