"""The README's Python-console block (its 3D Slicer section) run as written, in the headless harness,
on a real DICOM radiograph: the README's folders under /data/ are made in a temporary folder (the
radiograph at /data/cxr/IM-0001.dcm, real normals at /data/normals and /data/site-normals) and the
training budget is cut from an hour to seconds; nothing else is changed, so a line that stops
working in a console stops this test."""

import re

import pytest
import slicer
from slicer_harness import load_module_file

from conftest import REPO, data_dir
from slicer_cases import empty_scene, write_dicom_dx

SECTION = "## In 3D Slicer"
SHORTER_TRAINING = ("minutes=60", "minutes=0.1")


def console_blocks() -> list[str]:
    """The ```python blocks of the README's 3D Slicer section."""
    section = (REPO / "README.md").read_text().split(SECTION, 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def test_the_readme_has_a_console_block_that_starts_from_the_modules_logic():
    blocks = console_blocks()
    assert blocks and blocks[0].startswith('logic = slicer.util.getModuleLogic("SSLAnomaly")')
    assert any(SHORTER_TRAINING[0] in block for block in blocks), "the training line changed: update SHORTER_TRAINING"


@pytest.mark.slow
def test_the_readme_console_block_runs_as_written(default_model, small_normals, tmp_path):
    train, val = small_normals
    data = tmp_path / "data"
    (data / "cxr").mkdir(parents=True)
    radiograph = sorted(data_dir("kermany_fullres", "pneumonia").iterdir())[9]  # two findings with the round-7 adult model
    write_dicom_dx(radiograph, data / "cxr" / "IM-0001.dcm")
    (data / "normals").symlink_to(train)
    (data / "site-normals").symlink_to(val)
    load_module_file()  # the module loaded, as in Slicer, before the console asks for its logic
    empty_scene()
    for block in console_blocks():
        code = block.replace('"/data/', f'"{data}/').replace(*SHORTER_TRAINING)
        exec(compile(code, "README.md (Python console)", "exec"), {"slicer": slicer})
    assert list((data / "reviews").glob("*.review.json")), "no review was autosaved in the folder the README sets"
    assert (data / "out" / "review.mrb").is_file() and list((data / "out").glob("*.seg.dcm"))
    for model in ("site-cal", "site-2026", "site-refit"):
        assert (data / "models" / model / "manifest.json").is_file(), f"{model} was not written"
