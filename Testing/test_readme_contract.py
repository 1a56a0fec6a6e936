"""What the README and docs/ say of the product, held against the code where that is cheap (no model is
loaded): a user follows them word for word."""

import json
import re

from conftest import REPO

README = (REPO / "README.md").read_text(encoding="utf-8")


def sentence_of(text: str, start: str) -> str:
    """The sentence of `text` that begins with `start`, its line breaks and indentation as one space."""
    return re.sub(r"\s+", " ", text.split(start, 1)[1].split(". ", 1)[0])


def test_the_batch_index_holds_what_the_readme_says(tmp_path):
    """The README said the index keeps each file's 'size, time and SHA-256'; it keeps no time (a size and
    a time say nothing of whose image it is) but the results' image_id, which it did not name."""
    from SSLAnomalyLib.core.batch.resume import BATCH_INDEX, BatchIndex, FileIdentity

    image = tmp_path / "a.png"
    image.write_bytes(b"pixels")
    index = BatchIndex(tmp_path)
    index.start({"a": str(image)}, redo=set())
    index.done("a", str(image), FileIdentity.of(image), "sha256:00")
    index.save()
    (row,) = json.loads((tmp_path / BATCH_INDEX).read_text())
    said = sentence_of(README, f"`OUT/{BATCH_INDEX}` maps")
    assert set(row) - {"name", "input"} == {"size", "sha256", "image_id"}
    assert all(f"`{field}`" in said for field in ("size", "sha256", "image_id")), said


def test_a_function_the_docs_name_by_its_module_is_in_that_module():
    """docs/method.md named `findings.agree_with_verdict`; it is core/detection/regions.py's (a developer
    looking for a module `findings` found none). Each `module.function` of the README and docs/ whose
    function is one of the library's top-level names must name a module of that stem."""
    library = REPO / "SSLAnomaly" / "SSLAnomalyLib"
    modules_of: dict[str, set[str]] = {}
    for source in library.rglob("*.py"):
        for name in re.findall(r"^(?:def|class)\s+(\w+)", source.read_text(encoding="utf-8"), re.M):
            modules_of.setdefault(name, set()).add(source.stem)
    wrong = [f"{doc}: `{module}.{name}` is in {sorted(modules_of[name])}"
             for doc in ("README.md", "docs/method.md", "docs/anatomy.md", "docs/slicer.md")
             for code in re.findall(r"`([^`]+)`", (REPO / doc).read_text(encoding="utf-8"))
             for module, name in re.findall(r"(?<![\w.])([a-z_]+)\.([A-Za-z_]\w*)", code)
             if name in modules_of and module not in modules_of[name]]
    assert not wrong, wrong


def test_the_set_up_is_two_commands_the_demo_and_the_tests():
    """README's set-up block for a fresh machine: exactly two commands, scripts/demo.sh (a bundled model
    on a sample, `detect --lungs`) and scripts/test.sh, which .ci/run runs; both set up .venv/ first."""
    block = README.split("## Set-up: two commands on a fresh machine", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    commands = [line.split("#", 1)[0].strip() for line in block.splitlines() if line.split("#", 1)[0].strip()]
    assert commands == ["scripts/demo.sh", "scripts/test.sh"], commands
    demo, tests = ((REPO / command).read_text(encoding="utf-8") for command in commands)
    assert "scripts/setup_venv.sh" in demo and "scripts/setup_venv.sh" in tests
    assert re.search(r"sslanomaly detect --model \S+ --lungs ", demo) and "pytest" in tests
    assert "exec scripts/test.sh" in (REPO / ".ci" / "run").read_text(encoding="utf-8")


def test_every_option_the_readme_shows_is_one_its_subcommand_takes():
    """README's 'Command line (the interface contract)' block: each `--option` on a subcommand's line (and
    its continuation lines) is one that subcommand's parser knows, so a line copied from it is not
    refused as 'unrecognized arguments'."""
    import argparse

    from SSLAnomalyLib.cli import parser

    subcommands = next(a for a in parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    block = README.split("## Command line (the interface contract)", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    unknown, checked, command = [], 0, None
    for line in block.splitlines():
        if (start := re.match(r"\.venv/bin/(sslanomaly(?:-bench)?)\s+(\S+)", line)):
            command = start[2] if start[1] == "sslanomaly" else None
        if command is not None:
            options = re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", line.split("#", 1)[0])
            checked += len(options)
            unknown += [(command, o) for o in options if o not in subcommands[command]._option_string_actions]
    assert checked > 50 and not unknown, unknown


def test_docs_slicer_names_every_module_of_the_slicer_glue():
    """docs/slicer.md lists 'the only code importing slicer', mrml/, file by file; it left out removal.py
    (a volume deleted from the scene takes its heatmap and findings along), so a developer looking for that
    behaviour was not pointed to it."""
    listed = (REPO / "docs" / "slicer.md").read_text(encoding="utf-8")
    glue = sorted((REPO / "SSLAnomaly" / "SSLAnomalyLib" / "mrml").glob("*.py"))
    missing = [f.name for f in glue if f.name != "__init__.py" and f"`{f.name}`" not in listed]
    assert glue and not missing, missing
