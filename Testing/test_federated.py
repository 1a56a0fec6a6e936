"""`reference-stats` and `merge` on generated radiographs: two sites' second-round statistics merge
into the reference a fit on all their normals gives (to 1e-5 of the largest entry: float32
inverses); the first round is exact in its pooled Gaussian and means and says its patch covariance
is not; the files hold no pixels."""

import json
import subprocess

import numpy as np
import pytest
from PIL import Image
from safetensors.numpy import load_file

from conftest import REPO

SSLANOMALY = str(REPO / ".venv" / "bin" / "sslanomaly")
MODEL = "pediatric"


def run(*args):
    r = subprocess.run([SSLANOMALY, *map(str, args)], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr
    return r


@pytest.fixture(scope="module")
def sites(tmp_path_factory):
    from SSLAnomalyLib.core.reading.sample import synthetic_radiograph

    root = tmp_path_factory.mktemp("sites")
    folders = {name: root / name for name in ("a", "b", "all")}
    for f in folders.values():
        f.mkdir()
    for i in range(44):
        image = Image.fromarray(synthetic_radiograph(256, 224, seed=i))
        image.save(folders["a" if i < 22 else "b"] / f"{i}.png")
        image.save(folders["all"] / f"{i}.png")
    return root, folders


def reference(model_dir):
    from SSLAnomalyLib.core.model_files.model_folder import load

    loaded = load(model_dir)
    return loaded.manifest, loaded.encoder_state, loaded.arrays


def test_two_sites_merged_in_two_rounds_equal_the_fit_on_all(sites):
    root, folders = sites
    for name in ("a", "b", "all"):
        run("reference-stats", "--model", MODEL, "--normals", folders[name], "--out", root / f"{name}.stats", "--quiet")
    first = run("merge", "--model", MODEL, "--stats", root / "a.stats", root / "b.stats", "--out", root / "round1")
    assert "round 1 of 2" in first.stdout
    for name in ("a", "b"):
        run("reference-stats", "--model", MODEL, "--normals", folders[name], "--means", root / "round1",
            "--out", root / f"{name}2.stats", "--quiet")
    second = run("merge", "--model", MODEL, "--stats", root / "a2.stats", root / "b2.stats", "--out", root / "round2")
    assert "round 1 of 2" not in second.stdout
    run("merge", "--model", MODEL, "--stats", root / "all.stats", "--out", root / "whole")

    whole_manifest, _, whole = reference(root / "whole")
    manifest1, _, round1 = reference(root / "round1")
    manifest2, encoder2, round2 = reference(root / "round2")
    assert manifest2.section("federated")["exact"] and not manifest1.section("federated")["exact"]
    assert manifest2.section("federated")["n_normals"] == whole_manifest.section("federated")["n_normals"] == 44
    for key in ("pooled_mean", "pooled_precision", "patch_means", "patch_precision"):
        scale = np.abs(whole[key]).max()
        # float32 inverses: a few ulps of the largest entry apart when BLAS sums in another order
        assert np.abs(round2[key] - whole[key]).max() <= 1e-5 * scale, key
    for key in ("pooled_mean", "pooled_precision", "patch_means"):
        assert np.abs(round1[key] - whole[key]).max() <= 1e-5 * np.abs(whole[key]).max(), key
    assert np.abs(round1["patch_precision"] - whole["patch_precision"]).max() > 1e-4 * np.abs(whole["patch_precision"]).max()
    card = (root / "round2" / "MODEL_CARD.md").read_text()
    assert "Not yet calibrated" in card
    # the card's training data names the merged normals, not the starting model's as if still in the reference
    assert "- Normals: the 44 normals of 2 site(s)" in card and "every one in the reference" not in card

    stats = load_file(str(root / "a2.stats"))
    assert all(v.ndim <= 3 and v.shape[0] != 22 for v in stats.values())  # sums, no per-image rows
    header = json.loads(subprocess.run([str(REPO / ".venv" / "bin" / "python"), "-c",
                                        "import sys, json; from safetensors import safe_open; "
                                        "print(safe_open(sys.argv[1], 'np').metadata()['sslanomaly'])",
                                        str(root / "a2.stats")], capture_output=True, text=True).stdout)
    assert header["n_images"] == 22 and header["means_from"] == manifest1.model_id
    assert ".png" not in json.dumps(header)


def test_files_of_two_rounds_are_not_merged_together(sites, tmp_path, capsys):
    """A second-round file beside a first-round one was merged as "round 1 of 2" without a word: a
    reference that is neither round, its covariance summed over residuals against two sets of means."""
    from SSLAnomalyLib.cli import main

    root, folders = sites
    for name in ("a", "b"):
        if not (root / f"{name}.stats").exists():
            run("reference-stats", "--model", MODEL, "--normals", folders[name], "--out", root / f"{name}.stats", "--quiet")
    second = _edited(root / "a.stats", tmp_path / "a2.stats", lambda h: dict(h, means_from="sslanomaly-x-fed0123abcd-r1"))
    assert main(["merge", "--model", MODEL, "--stats", str(second), str(root / "b.stats"),
                 "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err
    assert "b.stats" in err and "round 1" in err and "round 2" in err and "merge the files of one round" in err
    assert not (tmp_path / "m").exists()


def test_merge_refuses_stats_of_another_model_and_too_few_normals(sites, tmp_path):
    root, folders = sites
    few = tmp_path / "few"
    few.mkdir()
    for p in sorted(folders["a"].iterdir())[:5]:
        (few / p.name).symlink_to(p)
    r = subprocess.run([SSLANOMALY, "reference-stats", "--model", MODEL, "--normals", few, "--out",
                        tmp_path / "few.stats", "--quiet"], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 2 and "at least 20" in r.stderr
    assert f"reference statistics {few}: " in r.stderr  # the folder by its name, not as a Python list "['...']"
    if not (root / "a.stats").exists():
        run("reference-stats", "--model", MODEL, "--normals", folders["a"], "--out", root / "a.stats", "--quiet")
    r = subprocess.run([SSLANOMALY, "merge", "--model", "adult", "--stats", root / "a.stats", "--out", tmp_path / "m"],
                       capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 2 and "was computed with model" in r.stderr and not (tmp_path / "m").exists()


def _edited(src, dst, header=None, arrays=None):
    """A copy of stats file `src` with its header and arrays edited."""
    from safetensors import safe_open
    from safetensors.numpy import save_file

    with safe_open(str(src), "np") as f:
        head = json.loads(f.metadata()["sslanomaly"])
    a = load_file(str(src))
    meta = header(head) if header else head
    save_file(arrays(a) if arrays else a, str(dst), metadata={"sslanomaly": meta if isinstance(meta, str) else json.dumps(meta)})
    return dst


def _with(a, **changes):
    return {**a, **changes}


def _counts_times(k, sums):
    """(header, arrays) edits multiplying every count by k, and every sum too where `sums` (a site
    then weighs k times its normals in the merge: its reference stands for everyone's)."""
    return (lambda h: dict(h, n_images=h["n_images"] * k),
            lambda a: {name: v * k if v.dtype == np.int64 else v * (k if sums else 1) for name, v in a.items()})


EDITS = {  # a stats file edited or damaged: merged silently into a wrong reference, or a traceback
    "an earlier format": (lambda h: dict(h, version=1), None, "format version 1"),
    "no model id": (lambda h: {k: v for k, v in h.items() if k != "model_id"}, None, "model_id"),
    "header not an object": (lambda h: "[1, 2]", None, "header"),
    "no residual sums": (None, lambda a: {k: v for k, v in a.items() if not k.startswith("residual")}, "residual"),
    "no normals": (*_counts_times(0, sums=True), "at least 20"),
    "counts disagree": (lambda h: dict(h, n_images=5), lambda a: _with(a, n_images=np.array([5], np.int64)), "counts"),
    "other patch shape": (None, lambda a: _with(a, patch_sum=np.ascontiguousarray(a["patch_sum"][:, :-1])), "shape"),
    "other pooled size": (None, lambda a: _with(a, **{"pooled.s1": a["pooled.s1"][:-1]}), "shape"),
    # merged without a word (exit 0) into a reference no normals give:
    "a covariance not positive": (None, lambda a: _with(a, **{"residual.s2": -a["residual.s2"]}), "no normals could give"),
    "all sums zero": (None, lambda a: {k: (v if k.endswith("n") or k == "n_images" else np.zeros_like(v))
                                       for k, v in a.items()}, "no normals could give"),
    "sums in float32": (None, lambda a: {k: (v if v.dtype == np.int64 else v.astype(np.float32)) for k, v in a.items()},
                        "float32"),
    "a count not whole": (None, lambda a: _with(a, n_images=np.array([22.7])), "float64"),
    "an array of no sum": (None, lambda a: _with(a, extra=np.zeros(3)), "extra"),
    "sums near the float limit": (None, lambda a: _with(a, **{"pooled.s2": a["pooled.s2"] * 1e300}),
                                  "no normals could give"),  # a flipped exponent bit: an OverflowError
    # counts inflated, merged as if the site held that many normals (its sums outweighing every other site's):
    "counts inflated with their sums": (*_counts_times(10 ** 13, sums=True), "more than any site holds"),
    "counts doubled without their sums": (*_counts_times(2, sums=False), "unit-length embeddings"),
    "a header count not the sums'": (lambda h: dict(h, n_images=44), None, "header counts 44 normals and its sums 22"),
}


@pytest.mark.parametrize("edit", sorted(EDITS))
def test_an_edited_stats_file_is_refused_by_name_before_anything_is_written(sites, tmp_path, capsys, edit):
    from SSLAnomalyLib.cli import main

    root, folders = sites
    if not (root / "a.stats").exists():
        run("reference-stats", "--model", MODEL, "--normals", folders["a"], "--out", root / "a.stats", "--quiet")
    header, arrays, reason = EDITS[edit]
    bad = _edited(root / "a.stats", tmp_path / "bad.stats", header, arrays)
    assert main(["merge", "--model", MODEL, "--stats", str(bad), "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err
    assert "bad.stats" in err and reason in err and "Traceback" not in err and not (tmp_path / "m").exists()


def _on_another_device(a):
    """A stats file's arrays as the same normals encoded on another device sum: every feature 1e-6
    larger (each moment by its degree, so the sums stay ones normals give) and each patch sum 1e-6
    off its own way."""
    signs = np.random.default_rng(0).choice([-1.0, 1.0], a["patch_sum"].shape)
    return {name: v if v.dtype == np.int64 else v * (1 + 1e-6 * signs) if name == "patch_sum"
            else v * (1 + 1e-6) ** int(name[-1]) for name, v in a.items()}


def test_one_sites_stats_given_twice_are_refused(sites, tmp_path, capsys):
    """`--stats a.stats a.stats` (or a copy, or its first- and second-round files) counted site a twice,
    and so did its sums computed on a GPU and on a CPU: only bit-equal sums were refused. Two sites'
    sums of as many normals are not the same normals', and merge."""
    import shutil

    from SSLAnomalyLib.cli import main
    from SSLAnomalyLib.training.federated import SiteStats

    root, folders = sites
    for name in ("a", "b"):
        if not (root / f"{name}.stats").exists():
            run("reference-stats", "--model", MODEL, "--normals", folders[name], "--out", root / f"{name}.stats", "--quiet")
    shutil.copy(root / "a.stats", tmp_path / "copy.stats")
    device = _edited(root / "a.stats", tmp_path / "device.stats", arrays=_on_another_device)
    for twice in ([root / "a.stats", root / "a.stats"], [root / "a.stats", tmp_path / "copy.stats"],
                  [root / "a.stats", device]):
        assert main(["merge", "--model", MODEL, "--stats", *map(str, twice), "--out", str(tmp_path / "m")]) == 2
        err = capsys.readouterr().err
        assert "same normals" in err and str(twice[1]) in err and f"as {twice[0]}:" in err
        assert not (tmp_path / "m").exists()
    assert SiteStats.load(root / "a.stats").stats.n_images == SiteStats.load(root / "b.stats").stats.n_images
    assert main(["merge", "--model", MODEL, "--stats", str(root / "a.stats"), str(root / "b.stats"),
                 "--out", str(tmp_path / "m")]) == 0


def test_reference_stats_never_writes_over_a_file_that_is_not_stats(sites, tmp_path):
    """`--out` naming one of the normals (or any other file) replaced it with the stats, and a folder
    gave a traceback; both are now refused before the normals are read, and a stats file is replaced."""
    root, folders = sites
    image = tmp_path / "0.png"
    image.write_bytes((folders["a"] / "0.png").read_bytes())
    for target, reason in ((image, "not a stats file"), (tmp_path, "folder")):
        r = subprocess.run([SSLANOMALY, "reference-stats", "--model", MODEL, "--normals", folders["a"], "--out", target,
                            "--quiet"], capture_output=True, text=True, cwd=REPO)
        assert r.returncode == 2 and reason in r.stderr and str(target) in r.stderr and "Traceback" not in r.stderr
    assert image.read_bytes() == (folders["a"] / "0.png").read_bytes()


def test_reference_stats_names_each_normal_it_could_not_read(sites, tmp_path):
    """Its sums left unreadable normals out in silence (22 of 24 used), where train and calibrate name them."""
    root, folders = sites
    normals = tmp_path / "normals"
    normals.mkdir()
    for f in folders["a"].iterdir():
        (normals / f.name).symlink_to(f)
    (normals / "broken.png").write_bytes(b"not a png")
    r = run("reference-stats", "--model", MODEL, "--normals", normals, "--out", tmp_path / "a.stats", "--quiet")
    assert f"warning: {normals / 'broken.png'}" in r.stderr and "left out of the normals" in r.stderr
    assert "statistics of 22 normals" in r.stdout


def test_a_merge_of_other_sums_under_the_same_file_names_is_another_model(sites, tmp_path):
    """The merged model was named by the sites' file-name hashes only: a re-merge after a site's images
    changed under the same names kept the id (and the thresholds), so `detect --resume` kept results of
    the earlier reference."""
    from SSLAnomalyLib.core.reading.sample import synthetic_radiograph

    root, folders = sites
    changed = tmp_path / "a"
    changed.mkdir()
    for i, f in enumerate(sorted(folders["a"].iterdir())):
        Image.fromarray(synthetic_radiograph(256, 224, seed=500 + i)).save(changed / f.name)
    ids = []
    for name, normals in (("a", folders["a"]), ("changed", changed)):
        run("reference-stats", "--model", MODEL, "--normals", normals, "--out", tmp_path / f"{name}.stats", "--quiet")
        run("merge", "--model", MODEL, "--stats", tmp_path / f"{name}.stats", "--out", tmp_path / f"merged-{name}")
        ids.append(reference(tmp_path / f"merged-{name}")[0].model_id)
    assert ids[0] != ids[1]


def test_the_default_models_merge_is_the_minutes_0_refit_on_all_the_normals(sites, tmp_path):
    """The default (adult) model pools its embedding over the input framed by its lung fields, but
    reference-stats encoded the normals with empty lung masks: the merged pooled Gaussian was another
    reference than `train --start-from adult --minutes 0` fits on the same normals (its mean 48 % off)."""
    root, folders = sites
    for name in ("a", "b"):
        run("reference-stats", "--model", "adult", "--normals", folders[name], "--out", tmp_path / f"{name}.stats",
            "--quiet", "--device", "cpu")
    run("merge", "--model", "adult", "--stats", tmp_path / "a.stats", tmp_path / "b.stats", "--out", tmp_path / "r1")
    _edited(tmp_path / "a.stats", tmp_path / "a2.stats", lambda h: dict(h, version=1))  # an old file: replaced
    for name in ("a", "b"):
        run("reference-stats", "--model", "adult", "--means", tmp_path / "r1", "--normals", folders[name],
            "--out", tmp_path / f"{name}2.stats", "--quiet", "--device", "cpu")
    run("merge", "--model", "adult", "--stats", tmp_path / "a2.stats", tmp_path / "b2.stats", "--out", tmp_path / "r2")
    run("train", "--start-from", "adult", "--minutes", "0", "--normals", folders["all"], "--out", tmp_path / "refit",
        "--quiet", "--device", "cpu")
    _, _, merged = reference(tmp_path / "r2")
    _, _, refit = reference(tmp_path / "refit")
    for key, tolerance in (("pooled_mean", 1e-6), ("patch_means", 1e-6), ("pooled_precision", 1e-4),
                           ("patch_precision", 1e-4)):  # float32 features of other batches: inverses a few 1e-5 apart
        assert np.abs(merged[key] - refit[key]).max() <= tolerance * np.abs(refit[key]).max(), key


def test_a_merge_is_never_written_over_the_model_it_is_made_from(sites, tmp_path, capsys):
    """`merge --model M --out M --overwrite` replaced M by the merge: the model every site's statistics
    name was gone, and the round-2 command the merge printed (`--model M --means M`) was refused."""
    import shutil

    from SSLAnomalyLib.cli import main
    from SSLAnomalyLib.core.model_files.registry import resolve

    root, folders = sites
    if not (root / "a.stats").exists():
        run("reference-stats", "--model", MODEL, "--normals", folders["a"], "--out", root / "a.stats", "--quiet")
    model = tmp_path / "model"
    shutil.copytree(resolve(MODEL), model)
    before = (model / "manifest.json").read_bytes()
    for out in (model, tmp_path / "." / "model"):
        assert main(["merge", "--model", str(model), "--stats", str(root / "a.stats"), "--out", str(out),
                     "--overwrite"]) == 2
        assert "is the model this one is made from" in capsys.readouterr().err
    assert (model / "manifest.json").read_bytes() == before


def test_a_wrong_means_model_is_refused_before_the_normals_are_read(sites, tmp_path):
    """`--means` naming a model that is not a first-round merge of `--model` was refused only after every
    normal had been read and encoded (an hour at a site of thousands); now before any is."""
    root, folders = sites
    few = tmp_path / "few"  # too few normals: reading them first would refuse these instead
    few.mkdir()
    (few / "0.png").symlink_to(folders["a"] / "0.png")
    for means in ("adult", tmp_path / "absent"):
        r = subprocess.run([SSLANOMALY, "reference-stats", "--model", MODEL, "--means", means, "--normals", few,
                            "--out", tmp_path / "x.stats", "--quiet"], capture_output=True, text=True, cwd=REPO)
        assert r.returncode == 2 and str(means) in r.stderr and "readable normals" not in r.stderr, r.stderr


def test_a_merge_of_a_calibrated_model_says_whose_thresholds_it_keeps(sites, tmp_path, capsys):
    """Merged from a site-calibrated model, the manifest dropped the calibration's record, so the card
    named the training's calibration normals (20 images) beside thresholds set on the site's 22; a
    calibration after the merge left `federated.calibrated` false."""
    from SSLAnomalyLib.cli import main
    from SSLAnomalyLib.core.model_files.model_folder import load

    root, folders = sites
    calibrated, merged, again = tmp_path / "calibrated", tmp_path / "merged", tmp_path / "again"
    assert main(["calibrate", "--model", MODEL, "--normals", str(folders["a"]), "--out", str(calibrated), "--quiet"]) == 0
    for name in ("a", "b"):
        assert main(["reference-stats", "--model", str(calibrated), "--normals", str(folders[name]),
                     "--out", str(tmp_path / f"{name}.stats"), "--quiet", "--device", "cpu"]) == 0
    assert main(["merge", "--model", str(calibrated), "--stats", str(tmp_path / "a.stats"), str(tmp_path / "b.stats"),
                 "--out", str(merged)]) == 0
    site = load(calibrated).manifest.section("site_calibration")
    assert load(merged).manifest.section("site_calibration") == site
    card = (merged / "MODEL_CARD.md").read_text()
    assert "- Calibration normals: the site's own" in card and "the normals of\n`a` (file-list hash" in card
    assert "22 calibration normals" in card and "Not yet calibrated" in card
    assert main(["calibrate", "--model", str(merged), "--normals", str(folders["b"]), "--out", str(again),
                 "--quiet"]) == 0
    manifest, card = load(again).manifest, (again / "MODEL_CARD.md").read_text()
    assert manifest.section("federated")["calibrated"] and manifest.section("site_calibration")["from_model"] == \
        load(merged).manifest.model_id
    assert "Not yet calibrated" not in card and "the normals of\n`b` (file-list hash" in card


def test_sites_whose_lung_fields_another_network_drew_are_not_merged(sites, tmp_path, capsys):
    """Each site's features are framed by its normals' lung fields, but a stats file did not say which
    lung network drew them: a site under another one (SSLANOMALY_LUNGS, another SSLAnomaly) was merged
    without a word, and the merged manifest named the model's network, so no detector warned. Here the
    bundled weights under another id; the merge of one network's sites names it."""
    import os

    from SSLAnomalyLib.cli import main
    from SSLAnomalyLib.core.anatomy.lung_network import BUNDLED_LUNGS, LUNGS_ENV, bundled_segmenter
    from SSLAnomalyLib.core.model_files.model_folder import load, save

    root, folders = sites
    if not (root / "a.stats").exists():
        run("reference-stats", "--model", MODEL, "--normals", folders["a"], "--out", root / "a.stats", "--quiet")
    lungs = load(BUNDLED_LUNGS)
    other = save(tmp_path / "lungs", lungs.encoder_state, lungs.arrays,
                 lungs.manifest.replaced(files=None, format_version=None, model_id="sslanomaly-lungs-candidate"), "card")
    r = subprocess.run([SSLANOMALY, "reference-stats", "--model", MODEL, "--normals", folders["b"], "--out",
                        tmp_path / "b.stats", "--quiet"], capture_output=True, text=True, cwd=REPO,
                       env={**os.environ, LUNGS_ENV: str(other)})
    assert r.returncode == 0, r.stderr
    assert main(["merge", "--model", MODEL, "--stats", str(root / "a.stats"), str(tmp_path / "b.stats"),
                 "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err
    assert "b.stats" in err and "sslanomaly-lungs-candidate" in err and bundled_segmenter().model_id in err
    assert not (tmp_path / "m").exists()
    assert main(["merge", "--model", MODEL, "--stats", str(root / "a.stats"), "--out", str(tmp_path / "m")]) == 0
    assert load(tmp_path / "m").manifest.lungs == bundled_segmenter().model_id
