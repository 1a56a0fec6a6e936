"""A finding the reader touched is kept through a detection again at other thresholds, and its label
follows the new verdict as the detector's own would: it never says "image within normal range" beside
ABNORMAL, nor stays unqualified beside a normal verdict, in the table, the export or a restored review.
A label the reader gave is the reader's, whatever the verdict."""

import json

from slicer_cases import empty_scene, logic
from conftest import data_dir
from SSLAnomalyLib.core.detection.regions import BELOW_VERDICT_LABEL, DEFAULT_LABEL
from SSLAnomalyLib.mrml.table import findings_table

RATE_ABNORMAL = 0.2  # nih/val pneumonia 00000061_012 is within normal range at the adult model's 7 %, ABNORMAL here


def case(tmp_path):
    empty_scene()
    lg = logic()
    lg.reviewFolder = tmp_path / "reviews"
    return lg, lg.loadVolume(data_dir("nih", "val", "pneumonia") / "00000061_012.png")


def labels(lg, volume) -> list[str]:
    table = findings_table(volume)
    shown = [table.GetCellText(r, 1) for r in range(table.GetNumberOfRows())]
    assert shown == [r["label"] for r in lg.findings(volume)]
    return shown


def test_a_noted_finding_follows_the_verdict_of_a_detection_again(tmp_path):
    lg, volume = case(tmp_path)
    lg.detect(volume, model="default")
    assert not lg.caseResult(volume)["abnormal"] and labels(lg, volume) == [BELOW_VERDICT_LABEL]
    lg.reviewFinding(lg.findingNodes(volume)[0], note="pacemaker lead?")

    lg.detect(volume, model="default", falsePositiveRate=RATE_ABNORMAL)
    assert lg.caseResult(volume)["abnormal"]
    assert set(labels(lg, volume)) == {DEFAULT_LABEL}  # was: the noted one still "within normal range"
    exported = json.loads(lg.exportCase(volume, tmp_path / "out", formats=["json"])["json"].read_text())
    assert exported["abnormal"] and {f["label"] for f in exported["findings"]} == {DEFAULT_LABEL}
    assert lg.restoreReview(volume) == 1  # the review saved under the normal verdict: no second box, same label
    assert set(labels(lg, volume)) == {DEFAULT_LABEL} and [r["note"] for r in lg.findings(volume)][0] == "pacemaker lead?"

    lg.detect(volume, model="default")  # back within normal range
    assert labels(lg, volume) == [BELOW_VERDICT_LABEL]

    lg, volume = case(tmp_path)  # Slicer started again: the review saved under ABNORMAL restored onto a normal one
    lg.detect(volume, model="default", falsePositiveRate=RATE_ABNORMAL)
    lg.reviewFinding(lg.findingNodes(volume)[0], note="seen")
    lg, volume = case(tmp_path)
    lg.detect(volume, model="default")
    lg.restoreReview(volume)
    assert set(labels(lg, volume)) == {BELOW_VERDICT_LABEL}


def test_a_label_the_reader_gave_stays_whatever_the_verdict(tmp_path):
    lg, volume = case(tmp_path)
    lg.detect(volume, model="default")
    lg.reviewFinding(lg.findingNodes(volume)[0], label="pacemaker")
    lg.detect(volume, model="default", falsePositiveRate=RATE_ABNORMAL)
    assert "pacemaker" in labels(lg, volume)
