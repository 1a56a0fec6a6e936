"""A saved review the scene did not restore is never written over by its autosave: declined after a new
detection, written by another volume of the same image, or written since the scene bundle loaded was saved,
it is kept beside the new autosave, unchanged, and the reader is told where; restoring it still works."""

import json
import logging

import jsonschema
import slicer

from slicer_cases import TEST_FPR, empty_scene, logic, model, tb_radiograph  # noqa: F401 (fixture)
from SSLAnomalyLib.core.results.findings_json import SCHEMA
from SSLAnomalyLib.core.results.review import load_review
from test_slicer_detection import as_exported


def detected(model_folder, reviews, lg=None):
    """The radiograph loaded and detected in the scene of `lg` (None: Slicer started again), saved in `reviews`."""
    if lg is None:
        empty_scene()
        lg = logic()
        lg.reviewFolder = reviews
    volume = lg.loadVolume(tb_radiograph())
    lg.detect(volume, model=str(model_folder), falsePositiveRate=TEST_FPR)
    return lg, volume


def decisions(lg, volume) -> list:
    return [(r["status"], r["note"]) for r in lg.findings(volume)]


def test_a_review_whose_restore_was_declined_is_kept_when_the_new_one_is_first_saved(model, tmp_path, caplog):
    """The reader rejected a finding; Slicer started again, the image detected again, the restore offered and
    declined: the first decision made then wrote over the file, and the rejection was gone from disk."""
    reviews = tmp_path / "reviews"
    lg, volume = detected(model, reviews)
    lg.reviewFinding(lg.findingNodes(volume)[0], status="rejected", note="rib crossing, not a lesion")
    saved = lg.savedReview(volume)
    earlier = saved.read_bytes()

    lg, volume = detected(model, reviews)
    assert lg.savedReview(volume) == saved  # what the panel offers to restore; the reader declines
    with caplog.at_level(logging.WARNING):
        lg.reviewFinding(lg.findingNodes(volume)[1], status="confirmed", note="consolidation")
    kept, = set(reviews.iterdir()) - {saved}
    assert kept.read_bytes() == earlier
    assert f"kept, unchanged, as {kept}" in caplog.text and "restoreReview" in caplog.text
    assert decisions(lg, volume)[:2] == [("unreviewed", ""), ("confirmed", "consolidation")]
    assert as_exported(load_review(saved)["findings"]) == lg.findings(volume)
    assert lg.savedReview(volume) == saved  # the latest autosave is the one offered next time

    caplog.clear()
    lg.reviewFinding(lg.findingNodes(volume)[1], note="consolidation, right lower zone")  # its own file: replaced
    assert set(reviews.iterdir()) == {saved, kept} and "kept" not in caplog.text

    lg.restoreReview(volume, kept)  # the kept decisions come back beside the new ones, and are autosaved
    assert decisions(lg, volume)[:2] == [("rejected", "rib crossing, not a lesion"),
                                         ("confirmed", "consolidation, right lower zone")]
    assert as_exported(load_review(saved)["findings"]) == lg.findings(volume)
    assert set(reviews.iterdir()) == {saved, kept} and kept.read_bytes() == earlier


def test_a_review_written_by_another_volume_or_since_the_bundle_was_saved_is_kept(model, tmp_path, caplog):
    """Detecting again in the same scene writes over the scene's own autosave (its decisions are still there).
    Another volume of the same image under the same name (as in a second scene), and a scene bundle saved before
    the file's last decisions, hold a review of the file they never loaded: each keeps that file before writing."""
    reviews = tmp_path / "reviews"
    lg, volume = detected(model, reviews)
    lg.rejectFinding(lg.findingNodes(volume)[0])
    lg.detect(volume, model=str(model), falsePositiveRate=TEST_FPR)  # the restore offered is declined
    lg.reviewFinding(lg.findingNodes(volume)[1], note="first volume")
    saved, = reviews.iterdir()
    mine = saved.read_bytes()

    _, other = detected(model, reviews, lg)
    other.SetName(volume.GetName())
    with caplog.at_level(logging.WARNING):
        lg.reviewFinding(lg.findingNodes(other)[1], note="second volume")
    kept, = set(reviews.iterdir()) - {saved}
    assert kept.read_bytes() == mine and str(kept) in caplog.text
    theirs = saved.read_bytes()
    lg.reviewFinding(lg.findingNodes(volume)[1], note="first volume, again")
    assert {p.read_bytes() for p in reviews.iterdir()} >= {mine, theirs} and len(list(reviews.iterdir())) == 3

    slicer.mrmlScene.RemoveNode(other)
    lg.saveScene(tmp_path / "session.mrb")
    lg.confirmFinding(lg.findingNodes(volume)[1])  # decided after the bundle was saved
    later = saved.read_bytes()
    lg.loadScene(tmp_path / "session.mrb")
    volume, = (v for v in slicer.util.getNodesByClass("vtkMRMLScalarVolumeNode") if lg.caseResult(v))
    before = {path: path.read_bytes() for path in reviews.iterdir()}
    lg.reviewFinding(lg.findingNodes(volume)[1], status="rejected")
    kept, = {path for path in reviews.iterdir() if path != saved and before.get(path) != path.read_bytes()}
    later = [(f["status"], f["note"], f["decided"]) for f in json.loads(later)["findings"]]  # added to a kept copy
    assert [(f["status"], f["note"], f["decided"]) for f in load_review(kept)["findings"]][:len(later)] == later
    assert decisions(lg, volume) == [("rejected", ""), ("rejected", "first volume, again")]
    assert as_exported(load_review(saved)["findings"]) == lg.findings(volume)


def test_two_volumes_of_one_image_taking_turns_keep_one_copy_each(model, tmp_path):
    """Two volumes of one image under one name share its autosave file: each decision on one kept the other's file
    aside as a new copy, '(2)' ... '(8)' after eight decisions, and on without end. A volume's newer review now
    replaces its own copy: one copy per volume, and each volume's latest decisions are on disk."""
    reviews = tmp_path / "reviews"
    lg, first = detected(model, reviews)
    _, second = detected(model, reviews, lg)
    second.SetName(first.GetName())
    for turn in range(4):
        for volume, who in ((first, "first"), (second, "second")):
            lg.reviewFinding(lg.findingNodes(volume)[0], note=f"{who} volume, turn {turn}")
    assert len(list(reviews.iterdir())) == 3
    notes = {load_review(path)["findings"][0]["note"] for path in reviews.iterdir()}
    assert {"first volume, turn 3", "second volume, turn 3"} <= notes


def test_every_decision_is_dated_and_keeps_its_date_through_save_reload_restore_and_export(model, tmp_path):
    """A review carried no time per decision: an audit could not tell when a finding was confirmed or rejected."""
    reviews = tmp_path / "reviews"
    lg, volume = detected(model, reviews)
    lg.rejectFinding(lg.findingNodes(volume)[0])
    lg.addMissedFinding(volume, [40, 60, 90, 120], label="nodule")
    dated = [f["decided"] for f in lg.findings(volume)]
    assert dated[0] and dated[-1] and not any(dated[1:-1])  # the untouched ones: none
    review = load_review(lg.savedReview(volume))
    assert [f["decided"] for f in review["findings"]] == dated
    review["findings"][0]["decided"] = "2020-01-02T03:04:05+0000"  # as a review of an earlier day holds it
    (tmp_path / "earlier.review.json").write_text(json.dumps(review))

    lg, volume = detected(model, reviews)  # Slicer started again, the earlier day's review restored
    lg.restoreReview(volume, tmp_path / "earlier.review.json")
    assert lg.findings(volume)[0]["decided"] == "2020-01-02T03:04:05+0000"
    before = lg.findings(volume)
    lg.saveScene(tmp_path / "session.mrb")
    lg.loadScene(tmp_path / "session.mrb")
    volume, = (v for v in slicer.util.getNodesByClass("vtkMRMLScalarVolumeNode") if lg.caseResult(v))
    assert lg.findings(volume) == before
    exported = json.loads(lg.exportCase(volume, tmp_path / "out", formats=["json"])["json"].read_text())
    assert [f["decided"] for f in exported["findings"]] == [f["decided"] for f in before]


def test_each_decision_on_a_finding_is_kept_dated_through_autosave_restore_reload_and_export(model, tmp_path):
    """Only the last decision on a finding was dated: a finding confirmed, then rejected, kept the rejection's time
    alone, in the scene, the autosave and the export, so an audit could not tell it had been confirmed, nor when."""
    reviews = tmp_path / "reviews"
    lg, volume = detected(model, reviews)
    lg.confirmFinding(lg.findingNodes(volume)[0])
    lg.reviewFinding(lg.findingNodes(volume)[0], status="rejected", note='rib; "crossing" & 50%: not a lesion')
    history = lg.findings(volume)[0]["decisions"]
    assert [(d["status"], d["note"]) for d in history] == [("confirmed", ""),
                                                           ("rejected", 'rib; "crossing" & 50%: not a lesion')]
    assert all(d["decided"] for d in history) and history[-1]["decided"] == lg.findings(volume)[0]["decided"]
    review = load_review(lg.savedReview(volume))
    assert review["findings"][0]["decisions"] == history
    for finding in review["findings"]:  # as a review saved before the decisions were kept holds it
        del finding["decisions"]
    (tmp_path / "earlier.review.json").write_text(json.dumps(review))

    lg, volume = detected(model, reviews)  # Slicer started again, the review restored, one more decision
    lg.restoreReview(volume)
    assert lg.findings(volume)[0]["decisions"] == history
    lg.confirmFinding(lg.findingNodes(volume)[0])
    before = lg.findings(volume)
    assert [d["status"] for d in before[0]["decisions"]] == ["confirmed", "rejected", "confirmed"]
    lg.saveScene(tmp_path / "session.mrb")
    lg.loadScene(tmp_path / "session.mrb")
    volume, = (v for v in slicer.util.getNodesByClass("vtkMRMLScalarVolumeNode") if lg.caseResult(v))
    assert lg.findings(volume) == before
    exported = json.loads(lg.exportCase(volume, tmp_path / "out", formats=["json"])["json"].read_text())
    assert exported["findings"][0]["decisions"] == before[0]["decisions"]
    jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text())).validate(exported)

    lg, volume = detected(model, reviews)  # the earlier file without them: its last decision, as it dated it
    lg.restoreReview(volume, tmp_path / "earlier.review.json")
    assert lg.findings(volume)[0]["decisions"] == history[-1:]


def test_reviews_declined_session_after_session_are_kept_in_one_copy_that_loses_no_decision(model, tmp_path):
    """Each session whose restore was declined kept the review before it as one more copy ((2), (3), (4)...): five
    sessions left four copies beside the autosave, without end. The review kept aside is now added to the copy kept
    before, its findings first; the copy restores every session's decisions."""
    reviews = tmp_path / "reviews"
    for session in range(4):
        lg, volume = detected(model, reviews)  # Slicer started again, the restore declined
        lg.reviewFinding(lg.findingNodes(volume)[0], status="confirmed", note=f"session {session}")
    saved = lg.savedReview(volume)
    kept, = set(reviews.iterdir()) - {saved}
    assert [f["note"] for f in load_review(kept)["findings"] if f["note"]] == ["session 2", "session 1", "session 0"]
    assert [f["note"] for f in load_review(saved)["findings"] if f["note"]] == ["session 3"]
    lg.restoreReview(volume, kept)
    assert sorted(note for _, note in decisions(lg, volume) if note) == [f"session {n}" for n in range(4)]


def test_a_finding_deleted_by_hand_leaves_the_table_and_autosave_at_once_and_its_decision_is_kept(model, tmp_path,
                                                                                                   caplog):
    """A confirmed finding's ROI deleted in the Data module left the findings table a row too long and the autosave
    holding it until the next decision, which then dropped the decision unsaid. The table, `logic.findings`, the
    autosave and an export now agree at once that it is gone, and the review before the deletion is kept beside the
    autosave (the log says where): restoring it brings the decision back."""
    from SSLAnomalyLib.mrml.table import findings_table

    reviews = tmp_path / "reviews"
    lg, volume = detected(model, reviews)
    confirmed, *rest = lg.findingNodes(volume)
    lg.reviewFinding(confirmed, status="confirmed", note="cavity")
    with caplog.at_level(logging.WARNING):
        slicer.mrmlScene.RemoveNode(confirmed)
    saved = lg.savedReview(volume)
    assert findings_table(volume).GetNumberOfRows() == len(rest) == len(lg.findings(volume))
    assert as_exported(load_review(saved)["findings"]) == lg.findings(volume)
    exported = json.loads(lg.exportCase(volume, tmp_path / "out", formats=["json"])["json"].read_text())
    assert [f["id"] for f in exported["findings"]] == [f["id"] for f in lg.findings(volume)]
    kept, = set(reviews.iterdir()) - {saved}
    assert f"kept, unchanged, as {kept}" in caplog.text and "restoreReview" in caplog.text
    assert ("confirmed", "cavity") in [(f["status"], f["note"]) for f in load_review(kept)["findings"]]
    lg.restoreReview(volume, kept)
    assert ("confirmed", "cavity") in decisions(lg, volume)
    assert findings_table(volume).GetNumberOfRows() == len(lg.findings(volume)) == len(rest) + 1
