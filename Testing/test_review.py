"""The radiologist's review survives a crash, refuses nonsense, and a review kept aside is never clobbered."""

import json
import subprocess
import sys
import time

import pytest

from conftest import REPO
from SSLAnomalyLib.core.results.review import (ReviewError, add_to_kept, find_review, keep_aside, load_review,
                                               review_path, save_review)

FINDINGS = {"input": "in/case.dcm", "score": 3.1, "threshold": 1.8, "abnormal": True, "percentile": 100.0,
            "model": "sslanomaly-test", "findings": [
                {"id": 1, "label": "anomaly", "score": 9.5, "bbox_ijk": [10, 20, 60, 90],
                 "centroid_ras": [-35.0, -55.0, 0.0], "area_mm2": 812.5, "slice_index": 0},
                {"id": 2, "label": "anomaly", "score": 7.1, "bbox_ijk": [100, 20, 140, 70],
                 "centroid_ras": [-120.0, -45.0, 0.0], "area_mm2": 410.0, "slice_index": 0}]}

# A reviewing session that autosaves after every decision, forever, until it is killed.
SESSION = """
import sys
from SSLAnomalyLib.core.results.review import load_review, save_review
path = sys.argv[1]
review = load_review(path)
n = 0
while True:
    n += 1
    review["findings"][n % 2].update(status=("confirmed", "rejected")[n % 2], note=f"decision {n}")
    save_review(path, review)
    if n == 1:
        print("saved", flush=True)
"""


def unreviewed(findings_json: dict = FINDINGS) -> dict:
    """A review before anything is decided (Slicer writes them, mrml/review.review_of): each finding as detected."""
    return {"input": findings_json["input"], "image_id": findings_json.get("image_id", ""),
            "model": findings_json["model"],
            "findings": [dict(f, status="unreviewed", note="", origin="model") for f in findings_json["findings"]]}


def test_review_round_trip(tmp_path):
    review = unreviewed()
    review["findings"][0].update(status="confirmed", label="consolidation", note="right lower lobe")
    review["findings"][1].update(status="rejected")
    review["findings"].append({"id": 3, "label": "nodule", "status": "confirmed", "note": "missed by the model",
                               "origin": "reader", "score": 0.0, "bbox_ijk": [5, 5, 30, 40], "slice_index": 0})
    path = save_review(review_path(tmp_path, "case", "sha256:ab"), review)
    assert path.name.startswith("case.") and path.name.endswith(".review.json")
    assert review_path(tmp_path, "1: CR/AP", "dicom:1.2").name.startswith("1_ CR_AP.")
    assert review_path(tmp_path, "case", "sha256:ab") != review_path(tmp_path, "case", "sha256:cd")  # keyed by image
    back = load_review(path)
    assert back["findings"] == review["findings"] and back["input"] == "in/case.dcm" and back["saved"]
    assert [f["status"] for f in back["findings"]] == ["confirmed", "rejected", "confirmed"]
    assert load_review(tmp_path / "none.review.json") is None


def test_invalid_reviews_are_refused_and_nothing_is_half_changed(tmp_path):
    review = unreviewed()
    path = save_review(tmp_path / "case.review.json", review)
    saved = path.read_text()
    for finding, reason in ((dict(review["findings"][0], status="maybe", note="lost?"), "status"),
                            (dict(review["findings"][0], label="  ", origin="reader"), "label")):
        with pytest.raises(ReviewError, match=f"case.review.json.*not saved.*{reason}"):
            save_review(path, dict(review, findings=[finding]))
        assert path.read_text() == saved
    no_model = {k: v for k, v in review.items() if k != "model"}  # its findings' model (they name none) unknown
    for damaged in ('{"findings": [', '{"format_version": 99, "findings": []}',
                    json.dumps(dict(review, findings=review["findings"] * 2)), json.dumps(no_model)):
        path.write_text(damaged)
        with pytest.raises(ReviewError, match="case.review.json"):
            load_review(path)


@pytest.mark.parametrize("score", ["NaN", "Infinity", "-Infinity", "1e999", "null", '"9.5"', "true"])
def test_a_finding_whose_score_is_no_finite_number_is_refused(tmp_path, score):
    """A review file holding a finding's score as NaN or Infinity (Python's json writes and reads both) was
    restored in Slicer onto another model's detection, and the export then failed at its findings JSON ('Out
    of range float values are not JSON compliant'); null failed the restore with a bare TypeError. Refused on
    loading, naming the file and the finding, as is saving one; a NaN area or centroid alike."""
    path = tmp_path / "case.review.json"
    for field, damaged in (("score", score), ("area_mm2", "NaN"), ("centroid_ras", "[NaN, 0, 0]")):
        review = json.loads(save_review(path, unreviewed()).read_text())
        review["findings"][1][field] = "DAMAGED"
        path.write_text(json.dumps(review).replace('"DAMAGED"', damaged))
        with pytest.raises(ReviewError, match=r"case.review.json.*finding 2: score, area_mm2 and centroid_ras"):
            load_review(path)
    review = unreviewed()
    review["findings"][0]["score"] = float("nan")
    with pytest.raises(ReviewError, match="not saved: finding 1: score"):
        save_review(tmp_path / "nan.review.json", review)
    assert not (tmp_path / "nan.review.json").exists()


def test_a_review_kept_aside_gets_a_free_name_and_stays_the_images_older_review(tmp_path):
    """The autosave of a volume named 'IM.0001' is kept aside twice: neither kept file is written over, both are
    still that image's (and its name's) reviews, each as it was, and the autosave written after them is the latest."""
    path = review_path(tmp_path, "IM.0001", "sha256:ab")
    texts = []
    for note in ("first", "second"):
        review = unreviewed()
        review["findings"][0].update(status="rejected", note=note)
        texts.append(save_review(path, review).read_text())
        time.sleep(0.01)  # distinct modification times
        assert keep_aside(path) == path.with_name(f"IM.0001 ({len(texts) + 1}).{path.name.split('.')[-3]}.review.json")
    kept = sorted(tmp_path.iterdir())
    assert [p.read_text() for p in kept] == texts and not path.exists()
    assert find_review(tmp_path, "IM.0001", "sha256:ab") == kept[-1]
    save_review(path, unreviewed())
    assert find_review(tmp_path, "IM.0001", "sha256:ab") == path
    assert [load_review(p)["findings"][0]["note"] for p in kept] == ["first", "second"]


def test_a_review_added_to_a_kept_copy_comes_first_beside_its_findings_and_a_damaged_copy_is_left_alone(tmp_path):
    """A copy kept aside earlier takes the findings of the next review kept aside rather than a copy of its own: the
    newer's first, then the older's it does not hold as they are. A copy that cannot be read is refused, untouched."""
    path = review_path(tmp_path, "IM.0001", "sha256:ab")

    def saved(note):
        review = unreviewed(dict(FINDINGS, image_id="sha256:ab"))
        review["findings"][0].update(status="rejected", note=note)
        return save_review(path, review)

    kept = keep_aside(saved("older"))
    assert add_to_kept(saved("newer"), kept) == kept and not path.exists()
    assert [(f["id"], f["note"]) for f in load_review(kept)["findings"]] == [(1, "newer"), (2, ""), (3, "older")]
    saved("newest")
    kept.write_text("{")
    with pytest.raises(ReviewError, match="not a readable review"):
        add_to_kept(path, kept)
    assert kept.read_text() == "{" and path.exists()


def test_review_survives_the_process_being_killed_mid_session(tmp_path):
    path = save_review(review_path(tmp_path, "case", "sha256:ab"), unreviewed())
    proc = subprocess.Popen([sys.executable, "-c", SESSION, str(path)], stdout=subprocess.PIPE, text=True,
                            cwd=REPO)
    assert proc.stdout.readline().strip() == "saved"
    time.sleep(0.5)  # hundreds of autosaves: the kill lands at an arbitrary point in one
    proc.kill()
    proc.wait()
    review = load_review(path)
    n = max(int(f["note"].split()[-1]) for f in review["findings"] if f["note"])
    assert n >= 2
    last = review["findings"][n % 2]  # the finding the last completed save decided on
    assert last["note"] == f"decision {n}" and last["status"] == ("confirmed", "rejected")[n % 2]
    assert [f.name for f in tmp_path.iterdir() if not f.name.startswith(".")] == [path.name]
