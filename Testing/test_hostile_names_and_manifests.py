"""Property tests (hypothesis): any file name a file system allows is listed, read, named and shown
safely; any edit of a model's manifest is refused with a ModelError, whatever it holds; any edit of
the bundled-model registry is refused naming the file, or still names folders inside Resources/Models
only. (The registry is not an input image: its cases are here, not in the messy-input corpus.)"""

import json
import os
import shutil

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from SSLAnomalyLib.core.model_files import registry
from SSLAnomalyLib.core.model_files.model_folder import MANIFEST, ModelError, load
from SSLAnomalyLib.core.reading.images import ReadError, list_inputs, read_radiograph
from SSLAnomalyLib.core.results.outputs import case_name, shown, unique_case_names

NAME_BYTES = st.binary(min_size=1, max_size=40).filter(lambda b: b"/" not in b and b"\0" not in b
                                                       and b not in (b".", b".."))
FOREVER = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FOREVER
@given(stem=NAME_BYTES)
def test_any_file_name_is_read_named_and_shown_safely(tmp_path_factory, stem):
    folder = tmp_path_factory.mktemp("names")
    path = os.fsencode(folder) + b"/" + stem + b".png"
    Image.fromarray((np.arange(64 * 64) % 251).astype(np.uint8).reshape(64, 64)).save(folder / "x.png")
    os.rename(folder / "x.png", path)
    listed = list_inputs([folder])
    assert len(listed) == (0 if stem.startswith(b".") else 1)  # hidden files are not inputs
    target = os.fsdecode(path)
    try:
        read_radiograph(target)
    except ReadError:
        pass  # refused with a reason is fine; anything else (an abort, another exception) is not
    name = case_name(target)
    assert name and all(c.isprintable() for c in name) and name.encode("utf-8")
    (folder / f"{name}.findings.json").write_text("{}")  # every writer can open the case's output names
    assert all(c.isprintable() for c in shown(target))
    assert len(set(unique_case_names([target, folder / "a" / os.path.basename(target)]))) == 2


def test_names_that_differ_only_in_how_an_accent_is_encoded_are_kept_apart():
    """'café' with one letter é (Windows, Linux) and with e and a combining accent (as macOS names files) are one
    file name where macOS compares them: two such inputs in two folders were both named 'café', so on a Mac
    one case's results were written over the other's."""
    names = unique_case_names(["d1/caf\u00e9.png", "d2/cafe\u0301.png"])
    assert names == ["d1_caf\u00e9", "d2_cafe\u0301"]


def test_thousands_of_alike_names_in_alike_folders_are_named_in_linear_time():
    """20,000 `pNNNNN/cxr/IMG.png` (a PACS export) took 40 s to name, on every run and resume before any
    work (each numbered name was tried from -2 up): the numbering now goes on where it stopped."""
    import time

    files = [f"/export/p{i:05d}/cxr/IMG.png" for i in range(20000)] + ["/export/cxr_IMG-3.png"]
    started = time.perf_counter()
    names = unique_case_names(files)
    assert time.perf_counter() - started < 5
    assert names[:4] == ["cxr_IMG", "cxr_IMG-2", "cxr_IMG-4", "cxr_IMG-5"] and names[-1] == "cxr_IMG-3"
    assert len({n.lower() for n in names}) == len(files)


def test_inputs_named_near_the_file_systems_limit_get_results(tmp_path):
    """A radiograph named with 240 characters (a PACS export's descriptive names) failed with '[Errno 36]
    File name too long' once `.findings.json` and a temporary's decorations were added to its name."""
    from SSLAnomalyLib.cli import main

    long_names = ["a" * 240 + ".png", "a" * 240 + "b.png", "\u00e9" * 120 + ".png"]  # the last: 240 bytes of UTF-8
    for folder, name in [("in", name) for name in long_names] + [("in/sub", long_names[0])]:
        (tmp_path / folder).mkdir(parents=True, exist_ok=True)
        Image.fromarray((np.arange(128 * 128) % 251).astype(np.uint8).reshape(128, 128)).save(tmp_path / folder / name)
    assert main(["detect", "--model", "default", "--quiet", "--out", str(tmp_path / "out"), str(tmp_path / "in")]) == 0
    results = list((tmp_path / "out").glob("*.findings.json"))
    assert len(results) == 4 and all(len(os.fsencode(p.name)) <= 255 for p in (tmp_path / "out").iterdir())
    assert {json.loads(p.read_text())["input"] for p in results} == {str(p) for p in (tmp_path / "in").rglob("*.png")}


def test_alike_names_in_folders_named_in_latin_1_or_with_control_characters_get_writable_names(tmp_path):
    """`in/\\xe9t\\xe9/IM.png` (a Latin-1 folder name) beside `in/ok/IM.png`: its name took the folder's
    undecodable bytes, and the batch ended in a UnicodeEncodeError writing the worklist; a folder named
    with a newline put the newline into three output names."""
    from SSLAnomalyLib.cli import main

    for folder in (b"\xe9t\xe9", b"new\nline", b"ok"):
        os.makedirs(os.fsencode(tmp_path / "in") + b"/" + folder)
        Image.fromarray((np.arange(128 * 128) % 251).astype(np.uint8).reshape(128, 128)).save(
            os.fsdecode(os.fsencode(tmp_path / "in") + b"/" + folder + b"/IM.png"))
    assert main(["detect", "--model", "default", "--quiet", "--out", str(tmp_path / "out"), str(tmp_path / "in")]) == 0
    names = {p.name[: -len(".findings.json")] for p in (tmp_path / "out").glob("*.findings.json")}
    assert names == {"%E9t%E9_IM", "new_line_IM", "ok_IM"}
    assert len((tmp_path / "out" / "worklist.csv").read_text(encoding="utf-8").splitlines()) == 4


JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.floats(allow_nan=False)
                           | st.text(max_size=10), lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=8)


@FOREVER
@given(data=st.data())
def test_any_edit_of_a_manifest_is_refused_cleanly(small_model, tmp_path_factory, data):
    folder = shutil.copytree(small_model, tmp_path_factory.mktemp("manifest") / "m", ignore=shutil.ignore_patterns("work"))
    manifest = json.loads((folder / MANIFEST).read_text())
    section = data.draw(st.sampled_from(sorted(k for k in manifest if k != "manifest_sha256")))
    edited = data.draw(JSON_VALUES)
    if edited == manifest[section]:
        return  # not an edit
    manifest[section] = edited
    (folder / MANIFEST).write_text(json.dumps(manifest))
    try:
        load(folder)
    except ModelError:
        return
    raise AssertionError(f"an edited {section} was loaded")


@FOREVER
@given(data=st.data())
def test_any_edit_of_the_model_registry_is_refused_by_name_or_stays_inside_the_models_folder(
        tmp_path_factory, monkeypatch, data):
    reg = json.loads((registry.MODELS_DIR / "models.json").read_text())  # the shipped one, not a previous edit
    where = data.draw(st.sampled_from(["default", "models"] + [f"{name}.{field}" for name in reg["models"]
                                                              for field in ("folder", "population", "description", "")]))
    edited = data.draw(JSON_VALUES | st.sampled_from(["/", "..", "../..", "adult/../..", "/tmp", "adult/../pediatric"]))
    section, _, field = where.partition(".")
    if section == "models" and field:
        name, _, key = field.partition(".")
        if key:
            reg["models"][name][key] = edited
        else:
            reg["models"][name] = edited
    else:
        reg[section] = edited
    path = tmp_path_factory.mktemp("registry") / "models.json"
    path.write_text(json.dumps(reg))
    monkeypatch.setattr(registry, "REGISTRY", path)
    try:
        models = registry.bundled_models()
    except registry.RegistryError as e:
        assert str(path) in str(e)
        return
    inside = registry.MODELS_DIR.resolve()
    assert all(inside in m.folder.resolve().parents for m in models)
    assert registry.default_name() in {m.name for m in models}


def test_non_ascii_folders_under_a_c_locale_are_read_and_written(tmp_path):
    """Under LC_ALL=C without Python's UTF-8 mode a non-ASCII path is held with surrogates, which
    SimpleITK cannot take: writing a heatmap into `out_é/` aborted the whole process (C++
    std::logic_error, exit 134). NRRD files are now read and written there through plain names."""
    import subprocess
    import sys

    script = ("import os, sys, numpy as np\n"
              "from SSLAnomalyLib.core.reading.image import Radiograph\n"
              "from SSLAnomalyLib.core.reading.images import read_radiograph, write_image\n"
              "p = os.fsdecode(os.fsencode(sys.argv[1]) + '/out_\\u00e9/M\\u00fcller_\\u65e5.nrrd'.encode())\n"
              "os.makedirs(os.path.dirname(p))\n"
              "write_image(Radiograph(np.arange(32 * 40, dtype=np.float32).reshape(1, 32, 40)), p)\n"
              "print(read_radiograph(p).pixels.shape, os.listdir(os.path.dirname(p)))\n")
    env = dict(os.environ, LC_ALL="C", LANG="C", PYTHONUTF8="0", PYTHONCOERCECLOCALE="0")
    r = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, env=env)
    assert r.returncode == 0, r.stderr.decode("utf-8", "replace")[-2000:]
    assert b"(1, 32, 40)" in r.stdout and r.stdout.count(b".nrrd") == 1  # no temporary left beside it


def test_every_json_of_a_batch_over_a_non_utf8_name_is_strict_json(pediatric_model, tmp_path):
    """A file named in Latin-1 (b'caf\\xe9.png') was recorded as "in/caf\\udce9.png" in its findings JSON and the
    batch index, and a broken one so in the failures log: a lone surrogate, which a strict parser (and other
    languages') rejects. Every JSON the batch writes now reads as UTF-8 text with the byte shown as \\xNN."""
    import subprocess
    import sys

    from conftest import data_dir
    from SSLAnomalyLib.core.files.json_text import dumps

    folder = os.fsencode(tmp_path / "in")
    os.mkdir(folder)
    shutil.copy(sorted(data_dir("kermany_fullres", "normal").iterdir())[0], folder + b"/caf\xe9.png")
    with open(folder + b"/bad\xe9.png", "wb") as f:
        f.write(b"not a png")
    r = subprocess.run([sys.executable, "-m", "SSLAnomalyLib.cli", "detect", "--model", str(pediatric_model),
                        "--out", str(tmp_path / "out"), os.fsdecode(folder)], capture_output=True, text=True)
    assert r.returncode == 1, r.stderr  # the broken file failed
    documents = []
    for written in (tmp_path / "out").iterdir():
        if written.name.endswith((".json", ".log")):
            text = written.read_bytes().decode("utf-8", "strict")
            documents += [json.loads(line) for line in text.splitlines()] if written.suffix == ".log" else \
                [json.loads(text)]
    assert len(documents) == 3  # findings, batch index, failures log
    assert all(json.dumps(d, ensure_ascii=False).encode("utf-8", "strict") for d in documents)
    inputs = sorted(row["input"] for d in documents for row in (d if isinstance(d, list) else [d]))
    assert [name.rsplit("/", 1)[1] for name in inputs] == ["bad\\xe9.png"] * 2 + ["caf\\xe9.png"] * 2
    assert json.loads(dumps({"\udce9": ["\U0001F480", "\ud800"]})) == {"\\xe9": ["\U0001F480", "\\ud800"]}


def test_the_training_sides_json_over_a_non_utf8_name_is_strict_json(tmp_path):
    """train-anatomy's checkpoint recorded its images folder b'imag\\xe9s' as "imag\\udce9s", and a device
    round's results.json its work folder so: a lone surrogate, which a strict parser rejects. Both are now
    written as \\xNN, and the checkpoint still resumes the run it was made by."""
    import torch
    from safetensors import safe_open

    from SSLAnomalyLib.training import device_round
    from SSLAnomalyLib.training.lung_checkpoint import LungRun, LungRunState

    def strict_json(text: str):
        value = json.loads(text)
        json.dumps(value, ensure_ascii=False).encode("utf-8", "strict")
        return value

    images = os.fsdecode(os.fsencode(tmp_path) + b"/imag\xe9s")
    net = torch.nn.Linear(2, 1)
    opt = torch.optim.AdamW(net.parameters())
    LungRun(tmp_path / "run", {"images": images}).save(net, opt, LungRunState(step=3))
    with safe_open(str(tmp_path / "run" / "lungs-checkpoint.safetensors"), "pt") as f:
        assert strict_json(f.metadata()["identity"])["images"].endswith("/imag\\xe9s")
    assert LungRun(tmp_path / "run", {"images": images}).resume(net, opt).step == 3
    work = tmp_path / os.fsdecode(b"w\xe9rk")
    (work / "logs").mkdir(parents=True)
    device_round.bring_back(work, tmp_path / "out", {"runs": {"x": {"log": str(work / "logs" / "x.log")}}})
    results = strict_json((tmp_path / "out" / "results.json").read_bytes().decode("utf-8", "strict"))
    assert results["runs"]["x"]["log"].endswith("/w\\xe9rk/logs/x.log")
