"""A model folder is data, never code: damaged, disguised or future model folders are refused with a
clear message, and nothing in the package can unpickle (test_training_model.py covers a flipped
byte and a future format version). Every writer replaces a model only when told, one at a time,
whole, with 0644 files and a card free of machine paths; `--model` says what it took; a site key
signs what is written and, where required, refuses the unsigned."""

import errno
import json
import os
import pickle
import re
import shutil
import signal
import subprocess
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, data_dir
from SSLAnomalyLib.cli.termination import Terminated, signals_raise
from SSLAnomalyLib.core.detection.detector import AnomalyDetector
from SSLAnomalyLib.core.files.errors import PathError
from SSLAnomalyLib.core.model_files import model_folder, registry
from SSLAnomalyLib.core.model_files.model_folder import (CARD, FORMAT_VERSION, MANIFEST, WEIGHTS, ModelError, load,
                                                         save, sha256)
from SSLAnomalyLib.core.model_files.signing import SiteKeyError, digest, seal

PACKAGE = REPO / "SSLAnomaly"
UNPICKLING = re.compile(r"torch\.load\s*\(|\bimport pickle\b|\bpickle\.|\bcPickle\b|\bjoblib\b|\bdill\b"
                        r"|allow_pickle\s*=\s*True")


class _Payload:
    """Unpickling this touches `marker`: proof that code in a model file ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (self.marker,)


@pytest.fixture
def copy_model(small_model, tmp_path):
    def copy(name):
        return shutil.copytree(small_model, tmp_path / name, ignore=shutil.ignore_patterns("work"))
    return copy


def rehash(folder: Path, **changes):
    """What an attacker who edits the manifest too would do: new hashes, and a new (unkeyed) seal; a
    site signature is kept as it was, since without the key it cannot be made anew."""
    manifest = dict(json.loads((folder / MANIFEST).read_text()), **changes)
    manifest["files"] = {name: sha256(folder / name) for name in manifest["files"]}
    manifest["manifest_sha256"] = digest(manifest)
    (folder / MANIFEST).write_text(json.dumps(manifest))


def test_truncated_weights_are_refused(copy_model):
    bad = copy_model("truncated")
    data = (bad / WEIGHTS).read_bytes()
    (bad / WEIGHTS).write_bytes(data[: len(data) // 3])
    with pytest.raises(ModelError, match="SHA-256"):
        AnomalyDetector.load(bad)
    rehash(bad)
    with pytest.raises(ModelError, match="not a readable safetensors"):
        AnomalyDetector.load(bad)


@pytest.mark.parametrize("manifest, reason", [
    ('{"format_version": 1, "model_id": "x", "fi', "not valid JSON"),
    ("[1, 2]", "not a JSON object"),
    ('{"model_id": "x"}', "no format_version"),
    ('{"format_version": 1, "files": ["model.safetensors"]}', "does not list"),
    ('{"format_version": 1, "files": {"model.safetensors": "0"}}', "not sealed"),
])
def test_damaged_manifest_is_refused(copy_model, manifest, reason):
    bad = copy_model("manifest")
    (bad / MANIFEST).write_text(manifest)
    with pytest.raises(ModelError, match=reason):
        AnomalyDetector.load(bad)


def test_an_edited_manifest_is_refused_even_with_its_file_hashes_intact(copy_model):
    bad = copy_model("edited")
    manifest = json.loads((bad / MANIFEST).read_text())
    manifest["encoder"]["input_size"] = 60000  # a memory bomb
    (bad / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match="edited after the model was made"):
        AnomalyDetector.load(bad)


@pytest.mark.parametrize("field, value, named", [
    ("encoder", {"input_size": 60000}, "input_size"), ("encoder", {"widths": [1, 2, "x", 4]}, "encoder.widths"),
    ("calibration", {"threshold": "high"}, "calibration.threshold"),
    ("scoring", {"component_stats": {"patch": [0.1, 0.0]}}, "scoring.component_stats.patch"),
])
def test_a_resealed_manifest_with_a_bad_field_names_the_field(copy_model, field, value, named):
    bad = copy_model("field")
    manifest = json.loads((bad / MANIFEST).read_text())
    rehash(bad, **{field: dict(manifest[field], **value)})
    with pytest.raises(ModelError, match=f"field {named}"):
        AnomalyDetector.load(bad)


def test_no_file_of_a_model_folder_may_lead_out_of_it(copy_model, tmp_path):
    bad = copy_model("linked")
    outside = tmp_path / "elsewhere.safetensors"
    (bad / WEIGHTS).rename(outside)
    (bad / WEIGHTS).symlink_to(outside)
    with pytest.raises(ModelError, match="leads out of the model folder"):
        AnomalyDetector.load(bad)
    traversal = copy_model("traversal")
    manifest = json.loads((traversal / MANIFEST).read_text())
    manifest["files"]["../manifest.json"] = "0"
    (traversal / MANIFEST).write_text(json.dumps(seal(manifest)))
    with pytest.raises(ModelError, match="missing"):
        AnomalyDetector.load(traversal)


def test_pickle_disguised_as_weights_is_refused_without_running(copy_model, tmp_path):
    bad = copy_model("pickled")
    marker = tmp_path / "code_ran"
    (bad / WEIGHTS).write_bytes(pickle.dumps({"encoder.conv1.weight": _Payload(marker)}))
    rehash(bad)
    with pytest.raises(ModelError, match="not a readable safetensors"):
        AnomalyDetector.load(bad)
    assert not marker.exists()


def test_cli_refuses_a_tampered_model_in_one_clear_line(copy_model, tmp_path):
    bad = copy_model("tampered")
    manifest = json.loads((bad / MANIFEST).read_text())
    manifest["format_version"] = FORMAT_VERSION + 1
    (bad / MANIFEST).write_text(json.dumps(manifest))
    image = tmp_path / "x.png"
    image.write_bytes(b"")
    r = subprocess.run([str(REPO / ".venv" / "bin" / "sslanomaly"), "detect", "--model", str(bad), "--out",
                        str(tmp_path / "out"), str(image)], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [f"error: model {bad}: format version {FORMAT_VERSION + 1} is newer "
                                             f"than this SSLAnomaly supports ({FORMAT_VERSION}); update SSLAnomaly"]


def test_nothing_in_the_package_can_unpickle():
    offenders = [f"{p.relative_to(REPO)}:{i}: {line.strip()}"
                 for p in sorted(PACKAGE.rglob("*.py"))
                 for i, line in enumerate(p.read_text().splitlines(), 1) if UNPICKLING.search(line)]
    assert not offenders, "model files must be safetensors/JSON only:\n" + "\n".join(offenders)


SSLANOMALY = str(REPO / ".venv" / "bin" / "sslanomaly")
KEY = "a-site-key-of-32-characters-0123"


def saved_again(source: Path, folder: Path, **options) -> Path:
    """`source`'s model written by model_folder.save into `folder` (what train, calibrate and merge do)."""
    loaded = load(source)
    manifest = loaded.manifest.replaced(files=None, format_version=None)
    return save(folder, loaded.encoder_state, loaded.arrays, manifest, (source / CARD).read_text(), **options)


def test_a_model_is_replaced_only_when_told_and_a_folder_of_other_files_never(small_model, tmp_path):
    target = saved_again(small_model, tmp_path / "m")
    with pytest.raises(ModelError, match="already holds a model .*pass --overwrite"):
        saved_again(small_model, target)
    (target / WEIGHTS).write_bytes(b"old")  # so that a replacement shows
    saved_again(small_model, target, overwrite=True)
    load(target)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "thesis.tex").write_text("mine")
    with pytest.raises(ModelError, match=r"not a model's \(thesis.tex\)"):
        saved_again(small_model, tmp_path / "docs", overwrite=True)
    assert (tmp_path / "docs" / "thesis.tex").read_text() == "mine"
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(ModelError, match="is a file, not a model folder"):
        saved_again(small_model, tmp_path / "a_file", overwrite=True)


def test_overwriting_through_a_link_replaces_the_model_it_leads_to(small_model, tmp_path):
    target = saved_again(small_model, tmp_path / "m")
    (tmp_path / "link").symlink_to(target)
    (target / WEIGHTS).write_bytes(b"old")  # so that a replacement shows
    saved_again(small_model, tmp_path / "link", overwrite=True)
    assert (tmp_path / "link").is_symlink() and load(target).manifest.model_id


def test_a_failed_write_leaves_the_old_model_whole_and_nothing_beside_it(small_model, tmp_path):
    target = saved_again(small_model, tmp_path / "m")
    before = {p.name: p.read_bytes() for p in target.iterdir()}
    loaded = load(small_model)
    arrays = dict(loaded.arrays, lung_prior=np.full_like(loaded.arrays["lung_prior"], np.nan))  # refused by the verification
    with pytest.raises(ModelError, match="non-finite"):
        save(target, loaded.encoder_state, arrays, loaded.manifest.replaced(files=None), "card", overwrite=True)
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no staging folder, no lock left


def test_a_full_disk_names_the_model_folder_and_leaves_nothing(default_model, tmp_path, monkeypatch):
    """calibrate or train onto a full disk ended in "error: [Errno 28] No space left on device", naming
    no folder (the weights' write into the hidden staging folder raised it)."""
    def full(path, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(model_folder, "_write", full)
    with pytest.raises(ModelError, match=f"^model {tmp_path / 'm'}: cannot be written: No space left on device$"):
        saved_again(default_model, tmp_path / "m")
    assert list(tmp_path.iterdir()) == []  # no staging folder, no lock, nothing looking like a model


def test_a_write_stopped_between_its_renames_leaves_the_old_model_in_place(small_model, tmp_path, monkeypatch):
    """SIGTERM (or Ctrl-C) landing after the old model was moved aside and before the new one took
    its place left no model in the folder, and the new one was removed with the staging folder."""
    target = saved_again(small_model, tmp_path / "m")
    before = {p.name: p.read_bytes() for p in target.iterdir()}
    rename = os.rename

    def stopped_after_moving_aside(src, dst):
        rename(src, dst)
        if Path(dst).name.startswith(".m.old"):
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(os, "rename", stopped_after_moving_aside)
    with signals_raise(), pytest.raises(Terminated):
        saved_again(small_model, target, overwrite=True)
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


KILLED_BETWEEN_RENAMES = (  # a writer that stops, to be killed, once it has moved the old model aside
    "import os, sys, time\n"
    "from SSLAnomalyLib.core.model_files.model_folder import load, save\n"
    "rename = os.rename\n"
    "def held(src, dst):\n"
    "    rename(src, dst)\n"
    "    if '.old' in os.path.basename(dst):\n"
    "        print('moved aside', flush=True); time.sleep(600)\n"
    "os.rename = held\n"
    "m = load(sys.argv[1])\n"
    "save(sys.argv[2], m.encoder_state, m.arrays, m.manifest.replaced(files=None, format_version=None), 'new card',\n"
    "     overwrite=True)\n")


def test_a_model_moved_aside_by_a_killed_write_is_named_and_put_back_by_the_next(small_model, tmp_path):
    """SIGKILL between the renames left the model hidden in .m.old<pid>-... and the new one in
    .m.new<pid>-..., nothing at m: a reader was told 'no such directory', and the next write wrote
    a model beside both, which no run ever removed (each a whole model's size)."""
    target = saved_again(small_model, tmp_path / "m")
    before = {p.name: p.read_bytes() for p in target.iterdir()}
    writer = subprocess.Popen([str(REPO / ".venv" / "bin" / "python"), "-c", KILLED_BETWEEN_RENAMES, str(small_model),
                               str(target)], stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "moved aside"
    finally:
        writer.kill()
        writer.wait()
    assert not target.exists()
    with pytest.raises(ModelError, match=r"is missing: a write of a model into it was killed after moving the model "
                                         r"it held aside to \.m\.old\d+-[0-9a-f]{8} beside it"):
        load(target)
    with pytest.raises(ModelError, match="already holds a model"):  # put back, and replaced only when told
        saved_again(small_model, target)
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_two_writers_never_share_a_model_folder(small_model, tmp_path):
    code = ("import sys, time; from SSLAnomalyLib.core.files.locks import folder_lock\n"
            "with folder_lock(sys.argv[1], sys.argv[2]):\n    print('held', flush=True); time.sleep(60)")
    holder = subprocess.Popen([str(REPO / ".venv" / "bin" / "python"), "-c", code, str(tmp_path / ".m.lock"),
                               str(tmp_path / "m")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(PathError, match=f"another sslanomaly run \\(process {holder.pid}"):
            saved_again(small_model, tmp_path / "m")
        assert not (tmp_path / "m").exists()
    finally:
        holder.kill()
        holder.wait()
    saved_again(small_model, tmp_path / "m")  # the holder is gone: its lock is stale
    assert not (tmp_path / ".m.lock").exists()


def test_model_files_have_the_usual_mode(small_model, tmp_path):
    old = os.umask(0o022)
    try:
        target = saved_again(small_model, tmp_path / "m")
    finally:
        os.umask(old)
    modes = {p.name: oct(p.stat().st_mode & 0o777) for p in [target, *target.iterdir()]}
    assert modes == {"m": "0o755", WEIGHTS: "0o644", MANIFEST: "0o644", CARD: "0o644"}


def test_calibrate_refuses_an_existing_model_first_and_writes_one_truthful_card(small_model, small_normals, tmp_path):
    out = saved_again(small_model, tmp_path / "site")
    run = [SSLANOMALY, "calibrate", "--model", str(small_model), "--normals", str(small_normals[1]), "--out", str(out),
           "--quiet"]
    r = subprocess.run(run, capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        f"error: model {out}: already holds a model (model {load(out).manifest.model_id}); pass --overwrite to replace "
        "it, or choose a new folder"]
    r = subprocess.run(run + ["--overwrite"], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr
    manifest, card = load(out).manifest, (out / CARD).read_text()
    assert manifest.section("site_calibration")["n_normals"] == 20
    assert set(re.findall(r"(\d+) calibration normals", card)) == {"20"}, card  # one count, the site's
    assert "Calibration normals: the site's own" in card and not re.search(r"\d+ normals of", card), card
    assert "sslanomaly train (library call)" in card
    assert "shared/data" not in card and "/tmp" not in card and str(tmp_path) not in card
    assert all(oct(p.stat().st_mode & 0o777) == "0o644" for p in out.iterdir())


def test_train_never_writes_over_the_model_it_starts_from(copy_model, small_normals, capsys):
    """`train --start-from M --out M --overwrite` replaced M, which the new manifest names as the
    model it started from (calibrate and merge refuse the same)."""
    from SSLAnomalyLib.cli import main

    start = copy_model("start")
    before = {p.name: p.read_bytes() for p in start.iterdir()}
    assert main(["train", "--normals", str(small_normals[1]), "--start-from", str(start), "--out", str(start),
                 "--overwrite", "--minutes", "0", "--device", "cpu", "--quiet"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"error: model {start}: is the model this one is made from; write the new model to a new folder")
    assert {p.name: p.read_bytes() for p in start.iterdir()} == before


def test_no_model_is_written_inside_the_model_it_is_made_from(copy_model, small_normals, capsys):
    """`calibrate --model M --out M/site` wrote a model inside M: M then held files not its own, which
    travelled with it, and was refused for ever as a folder of other files by any write over it."""
    from SSLAnomalyLib.cli import main

    source = copy_model("source")
    before = sorted(p.name for p in source.iterdir())
    assert main(["calibrate", "--model", str(source), "--normals", str(small_normals[1]), "--out",
                 str(source / "site"), "--quiet"]) == 2
    assert "is inside the model folder this one is made from" in capsys.readouterr().err
    assert sorted(p.name for p in source.iterdir()) == before


@pytest.mark.parametrize("command", ["calibrate --model {model}", "train --start-from {model} --minutes 0 --device cpu"])
def test_an_out_under_a_file_is_refused_before_any_normal_is_scored(command, small_model, small_normals, tmp_path,
                                                                   capsys):
    """`--out afile/site`: calibrate scored every normal and then failed with '[Errno 17] File
    exists: afile'; now every writer names the file before its work."""
    from SSLAnomalyLib.cli import main

    (tmp_path / "afile").write_text("mine")
    args = command.format(model=small_model).split()
    assert main([*args, "--normals", str(small_normals[1]), "--out", str(tmp_path / "afile" / "site"), "--quiet"]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("error: model ") and f"cannot be made: {tmp_path / 'afile'} is a file, not a folder" in last
    assert (tmp_path / "afile").read_text() == "mine"


@pytest.mark.parametrize("command", ["calibrate --model {model}", "train --start-from {model} --minutes 0 --device cpu"])
def test_no_command_writes_a_model_into_the_current_folder(command, small_model, small_normals, tmp_path, monkeypatch,
                                                           capsys):
    """`--out .` in an empty folder: calibrate put the model in place of that folder, leaving the
    shell in a removed one (`ls` showed nothing, `--model .` failed); train ended in a traceback
    (ValueError: PosixPath('.') has an empty name)."""
    from SSLAnomalyLib.cli import main

    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    args = command.format(model=small_model).split()
    assert main([*args, "--normals", str(small_normals[1]), "--out", ".", "--quiet"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("error: model .: is the current folder;")
    assert Path.cwd().samefile(here) and not any(here.iterdir())


@pytest.fixture
def registry_copy(tmp_path, monkeypatch):
    """A copy of the bundled registry, read in its place, to be broken by a test (its folders are
    still Resources/Models')."""
    path = Path(shutil.copyfile(registry.REGISTRY, tmp_path / "models.json"))
    monkeypatch.setattr(registry, "REGISTRY", path)
    return path


@pytest.mark.parametrize("edit, reason", [
    (lambda r: "{not json", "is not valid JSON"),
    (lambda r: json.dumps(dict(r, models={"x": {"folder": "adult", "description": "d"}}, default="x")),
     "entry 'x' has no population"),
    (lambda r: json.dumps(dict(r, models=dict(r["models"], evil=dict(r["models"]["adult"], folder="/tmp")))),
     "entry 'evil' names the folder '/tmp', which is not inside"),
    (lambda r: json.dumps(dict(r, models=dict(r["models"], evil=dict(r["models"]["adult"], folder="../../..")))),
     "entry 'evil' names the folder '../../..', which is not inside"),
    (lambda r: json.dumps(dict(r, default="nobody")), "\"default\" \\('nobody'\\) is not one of its models"),
])
def test_a_broken_registry_is_named_and_never_needed_for_a_folder(small_model, registry_copy, edit, reason):
    registry_copy.write_text(edit(json.loads(registry_copy.read_text())))
    with pytest.raises(registry.RegistryError, match=f"model registry {registry_copy}: {reason}"):
        load("default")
    manifest = load(str(small_model)).manifest  # a folder path never reads the registry
    assert manifest.model_id and registry.population_of(str(small_model), manifest) is None


def _population(r, **population):
    return json.dumps(dict(r, models=dict(r["models"], adult=dict(r["models"]["adult"], population=population))))


@pytest.mark.parametrize("edit, reason", [
    (lambda r: json.dumps(r, indent=1).replace('"pediatric": {', '"adult": {', 1),  # a second 'adult' would win
     "names 'adult' twice in one JSON object"),
    (lambda r: _population(r, label="adults", min_age_years=18, max_age=40),  # a typo would mean no upper age
     "entry 'adult' has a population with unknown field\\(s\\) \\['max_age'\\]"),
    (lambda r: _population(r, label="adults", min_age_years=60, max_age_years=18),
     "entry 'adult' has a population that is not"),
    (lambda r: _population(r, label="adults", min_age_years=-1), "entry 'adult' has a population that is not"),
    (lambda r: json.dumps(dict(r, models=dict(r["models"], default=r["models"]["adult"]))),
     "names a model 'default', which means the default model"),
    (lambda r: _population(r, label=None, min_age_years=18), "entry 'adult' has a population that is not"),  # was "None"
    (lambda r: _population(r, label=5, min_age_years=18), "entry 'adult' has a population that is not"),  # was "5"
    *[(lambda r, name=name: json.dumps(dict(r, models=dict(r["models"], **{name: r["models"]["adult"]}))),
       f"entry '{name}' is not a name --model can give") for name in ("", " ", "site/adult", "./adult", "~adult")],
])
def test_a_registry_that_would_mislead_is_refused(registry_copy, edit, reason):
    """Duplicate names, unknown or impossible population fields, a label that is not text, a name that
    `--model` reads as a folder (listed by `models`, never loadable) and a model called 'default' are
    refused, never read as some other population or model."""
    registry_copy.write_text(edit(json.loads(registry_copy.read_text())))
    with pytest.raises(registry.RegistryError, match=f"model registry {registry_copy}: {reason}"):
        registry.bundled_models()


def test_models_names_an_entry_of_another_kind_unusable(registry_copy, capsys):
    """An entry naming the lung network's folder ended `sslanomaly models` in an AttributeError."""
    from SSLAnomalyLib.cli import main

    reg = json.loads(registry_copy.read_text())
    registry_copy.write_text(json.dumps(dict(reg, models=dict(reg["models"], lungs=dict(reg["models"]["adult"],
                                                                                          folder="lungs")))))
    assert main(["models"]) == 0
    listed = capsys.readouterr().out
    assert "lungs: unusable (" in listed and "lung" in listed.split("lungs: unusable (")[1].split(")")[0]
    assert "adult (default): adults" in listed


def test_a_broken_registry_is_one_line_on_the_command_line(small_model, tmp_path):
    image = sorted(data_dir("kermany", "val", "normal").iterdir())[0]
    broken = tmp_path / "models.json"
    broken.write_text("{")
    code = ("import sys; from pathlib import Path; from SSLAnomalyLib.core.model_files import registry; "
            f"registry.REGISTRY = Path({str(broken)!r}); from SSLAnomalyLib.cli import main; sys.exit(main(sys.argv[1:]))")
    run = [str(REPO / ".venv" / "bin" / "python"), "-c", code, "detect", "--quiet", "--out", str(tmp_path / "out"), str(image)]
    r = subprocess.run(run + ["--model", "default"], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1].startswith(f"error: model registry {broken}: is not valid JSON")
    assert "Traceback" not in r.stderr
    r = subprocess.run(run + ["--model", str(small_model)], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr


def test_a_file_given_as_model_is_named_a_file(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"x")
    with pytest.raises(ModelError, match="is a file, not a model folder"):
        load(str(tmp_path / "model.safetensors"))


@pytest.fixture
def site_key(monkeypatch):
    for name in ("SSLANOMALY_SITE_KEY", "SSLANOMALY_SITE_KEY_FILE", "SSLANOMALY_REQUIRE_SIGNED"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SSLANOMALY_SITE_KEY", KEY)
    return monkeypatch


def test_the_seal_guards_against_corruption_not_edits_and_the_site_signature_against_edits(small_model, tmp_path,
                                                                                            site_key):
    signed, resigned = saved_again(small_model, tmp_path / "signed"), saved_again(small_model, tmp_path / "resigned")
    assert json.loads((signed / MANIFEST).read_text())["site_signature"]["algorithm"] == "HMAC-SHA256"
    edited = dict(load(signed).manifest.section("calibration"), set_aside_files=["edited.png"])
    rehash(signed, calibration=edited)  # edited, resealed without the key
    load(signed)  # the unkeyed seal cannot tell (README: known limits)
    site_key.setenv("SSLANOMALY_REQUIRE_SIGNED", "1")
    with pytest.raises(ModelError, match="signature does not match this site's key"):
        load(signed)
    with pytest.raises(ModelError, match="is not signed"):
        load(small_model)
    load(resigned)
    load("pediatric")  # the bundled models are part of the installed software
    site_key.setenv("SSLANOMALY_SITE_KEY", "another-key-of-32-characters-xyz")
    with pytest.raises(ModelError, match="signed with another key"):
        load(resigned)
    site_key.delenv("SSLANOMALY_SITE_KEY")
    with pytest.raises(ModelError, match="no site key is set"):
        load(resigned)
    site_key.delenv("SSLANOMALY_REQUIRE_SIGNED")
    load(resigned)  # a signed folder loads wherever no signature is asked for


def test_a_site_key_file_signs_and_a_bad_key_is_named(small_model, tmp_path, site_key):
    site_key.delenv("SSLANOMALY_SITE_KEY")
    key_file = tmp_path / "site.key"
    key_file.write_text(KEY + "\n")
    site_key.setenv("SSLANOMALY_SITE_KEY_FILE", str(key_file))
    signed = saved_again(small_model, tmp_path / "m")
    key_file.write_text("short")
    with pytest.raises(SiteKeyError, match=f"site key {key_file}: is 5 bytes long"):
        saved_again(small_model, tmp_path / "m2")
    assert not (tmp_path / "m2").exists()
    key_file.write_text(KEY)
    site_key.setenv("SSLANOMALY_REQUIRE_SIGNED", "1")
    load(signed)
    site_key.setenv("SSLANOMALY_SITE_KEY_FILE", str(tmp_path / "absent.key"))
    with pytest.raises(SiteKeyError, match="cannot be read"):
        load(signed)


def test_train_anatomy_refuses_an_existing_model_before_reading_anything(small_model, tmp_path):
    from SSLAnomalyLib.training.lung_training import train_lung_model

    with pytest.raises(ModelError, match="already holds a model"):
        train_lung_model(tmp_path / "no_images", tmp_path / "no_masks", small_model)



@pytest.mark.parametrize("command", ["train --normals N", "train-anatomy --images I --masks M", "calibrate --normals N",
                                     "merge --model pediatric --stats S"])
def test_no_command_writes_a_model_into_the_bundled_models_folder(command, capsys):
    """A folder there loads as part of the installed software, exempt from SSLANOMALY_REQUIRE_SIGNED: an
    unsigned site model written there would pass as bundled. Refused before anything is read."""
    from SSLAnomalyLib.cli import main

    for out in (registry.MODELS_DIR / "site-model", registry.MODELS_DIR):
        with pytest.raises(SystemExit) as refused:
            main([*command.split(), "--out", str(out)])
        assert refused.value.code == 2 and "inside the bundled models' folder" in capsys.readouterr().err
    assert not (registry.MODELS_DIR / "site-model").exists()
    registry.refuse_bundled_target(REPO / "runs" / "site-model")  # anywhere else is fine


@pytest.mark.parametrize("command", ["calibrate --model {model}", "train --start-from {model} --minutes 0 --device cpu"])
def test_a_writer_checks_once_that_its_out_can_be_written(command, small_model, small_normals, tmp_path, monkeypatch):
    """`train` checked three times that --out could be written (its lock, its look at --out, and the
    model's save, after its parent and lock were already made), `calibrate` twice: once, before the work."""
    from SSLAnomalyLib.cli import main

    checked = []
    check = model_folder.refuse_unwritable
    monkeypatch.setattr(model_folder, "refuse_unwritable", lambda folder: (checked.append(folder), check(folder))[1])
    args = command.format(model=small_model).split()
    assert main([*args, "--normals", str(small_normals[1]), "--out", str(tmp_path / "site"), "--quiet"]) == 0
    assert [str(folder) for folder in checked] == [str(tmp_path / "site")]
