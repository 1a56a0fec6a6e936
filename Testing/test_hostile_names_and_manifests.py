"""Property tests (hypothesis): any file name a file system allows is listed, read, named and shown
safely; any edit of a model's manifest is refused with a ModelError, whatever it holds."""

import json
import os
import shutil

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from SSLAnomalyLib.core.io import ReadError, list_inputs, read_radiograph
from SSLAnomalyLib.core.model_folder import MANIFEST, ModelError, load
from SSLAnomalyLib.core.outputs import case_name, shown, unique_case_names

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
