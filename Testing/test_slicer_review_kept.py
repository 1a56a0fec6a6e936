"""A saved review the scene did not restore is never written over by its autosave: declined after a new
detection, written by another volume of the same image, or written since the scene bundle loaded was saved,
it is kept beside the new autosave, unchanged, and the reader is told where; restoring it still works."""

import logging

import slicer

from slicer_cases import TEST_FPR, empty_scene, logic, model, tb_radiograph  # noqa: F401 (fixture)
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
    before = set(reviews.iterdir())
    lg.reviewFinding(lg.findingNodes(volume)[1], status="rejected")
    kept, = set(reviews.iterdir()) - before
    assert kept.read_bytes() == later
    assert decisions(lg, volume) == [("rejected", ""), ("rejected", "first volume, again")]
    assert as_exported(load_review(saved)["findings"]) == lg.findings(volume)
