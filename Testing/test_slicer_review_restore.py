"""Restoring a saved review onto the findings in the scene: a decision the reader has already made there
stands, and none of the saved ones is lost or put onto a finding it was not made on."""

import json
import shutil

import pytest

from slicer_cases import (TEST_FPR, empty_scene, full_resolution_radiograph, logic, model,  # noqa: F401 (fixture)
                          renamed_model)
from SSLAnomalyLib.core.results.review import load_review
from test_slicer_detection import as_exported


def detected(model_folder, reviews):
    """A fresh scene (Slicer started again), the radiograph detected by `model_folder`, autosaved into `reviews`."""
    empty_scene()
    lg = logic()
    lg.reviewFolder = reviews
    volume = lg.loadVolume(full_resolution_radiograph("pneumonia"))
    lg.detect(volume, model=str(model_folder), falsePositiveRate=TEST_FPR)
    return lg, volume


@pytest.mark.parametrize("other_model", [True, False], ids=["another model", "the same model"])
def test_a_decision_made_before_the_restore_stands_and_the_saved_one_is_kept_beside_it(model, tmp_path, other_model):
    """The reader confirmed the finding at a place, then restored an older review that had rejected the finding
    there: the rejection was written onto the reader's finding (of another model, too), the confirmation lost.
    The reader's decision stands; the saved one comes back as its own finding, as its model made it."""
    lg, volume = detected(model, tmp_path / "reviews")
    first = lg.caseResult(volume)["model"]
    lg.reviewFinding(lg.findingNodes(volume)[0], status="rejected", note="rib crossing, not a lesion")
    older = shutil.copy(lg.savedReview(volume), tmp_path / "older.review.json")

    second = renamed_model(model, tmp_path / "site", "site-copy") if other_model else model
    lg, volume = detected(second, tmp_path / "reviews")
    lg.reviewFinding(lg.findingNodes(volume)[0], status="confirmed", note="consolidation")
    before = lg.findings(volume)
    lg.restoreReview(volume, older)
    records = lg.findings(volume)
    assert records[:len(before)] == before
    kept, = records[len(before):]
    assert (kept["status"], kept["note"], kept["origin"], kept["model"], kept["bbox_ijk"], kept["score"]) == \
           ("rejected", "rib crossing, not a lesion", "model", first, before[0]["bbox_ijk"], before[0]["score"])
    assert len({r["id"] for r in records}) == len(records)
    assert as_exported(load_review(lg.savedReview(volume))["findings"]) == records
    lg.restoreReview(volume, older)  # restored again: nothing more
    assert lg.findings(volume) == records


@pytest.mark.parametrize("other_model", [False, True], ids=["the same model", "another model"])
def test_a_review_saved_before_findings_named_their_model_is_the_review_models(model, tmp_path, other_model):
    """A review file of before each finding named its model has the model only at its top (the case's): its
    findings are taken as that model's. Restored onto that model's detection, its decisions go onto the findings
    in place; onto another model's, a decided finding comes back as its model made it (its score), in place of
    the other model's untouched finding there, and the findings nobody touched stay the other model's."""
    lg, volume = detected(model, tmp_path / "reviews")
    lg.reviewFinding(lg.findingNodes(volume)[0], status="confirmed", note="consolidation")
    decided = lg.findings(volume)
    review = json.loads(lg.savedReview(volume).read_text())
    old = tmp_path / "old.review.json"
    old.write_text(json.dumps(dict(review, findings=[{k: v for k, v in f.items() if k != "model"}
                                                     for f in review["findings"]])))
    assert review["model"] == decided[0]["model"]
    assert not any("model" in f for f in json.loads(old.read_text())["findings"])

    second = renamed_model(model, tmp_path / "site", "site-copy") if other_model else model
    lg, volume = detected(second, tmp_path / "reviews")
    shown = lg.findings(volume)
    applied = lg.restoreReview(volume, old)
    if other_model:
        assert applied == 1
        assert lg.findings(volume) == shown[1:] + [dict(decided[0], id=shown[-1]["id"] + 1)]
        assert {r["model"] for r in shown} == {"site-copy"}
    else:
        assert applied == len(decided) and lg.findings(volume) == decided
