"""One findings document: the command line's and the Slicer export's `<name>.findings.json` are
the same document, valid against the one JSON Schema; the export only adds the review."""

import json

import jsonschema
import pytest

from slicer_cases import TEST_FPR, empty_scene, full_resolution_radiograph, logic, model, write_dicom_dx  # noqa: F401
from SSLAnomalyLib.cli import main
from SSLAnomalyLib.core.reading.images import read_radiograph
from SSLAnomalyLib.core.results.findings_json import SCHEMA, to_json


@pytest.fixture(scope="module")
def validator():
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_the_command_line_and_the_slicer_export_write_one_valid_document(validator, model, tmp_path):
    dx = write_dicom_dx(full_resolution_radiograph("pneumonia"), tmp_path / "cxr.dcm")
    assert main(["detect", "--model", str(model), "--out", str(tmp_path / "cli"), "--fpr", str(TEST_FPR),
                 "--quiet", str(dx)]) == 0
    cli = json.loads((tmp_path / "cli" / "cxr.findings.json").read_text())
    validator.validate(cli)

    empty_scene()
    lg = logic()
    volume = lg.loadVolume(dx)
    lg.detect(volume, model=str(model), falsePositiveRate=TEST_FPR)
    lg.rejectFinding(lg.findingNodes(volume)[0])
    lg.addMissedFinding(volume, [100, 150, 260, 330], label="nodule", note="right upper zone")
    slicer = json.loads(lg.exportCase(volume, tmp_path / "slicer", formats=["json"])["json"].read_text())
    validator.validate(slicer)

    assert set(slicer) - set(cli) == {"review"}  # the export adds the review to the same document
    assert slicer["image_id"] == cli["image_id"] == read_radiograph(dx).identity
    assert cli["image_id"].startswith("dicom:")
    assert {k: slicer[k] for k in ("score", "threshold", "model")} == {k: cli[k] for k in ("score", "threshold", "model")}
    assert [f["status"] for f in slicer["findings"]][0] == "rejected" and slicer["findings"][-1]["origin"] == "reader"


def test_the_schema_refuses_the_old_slicer_shape_and_json_refuses_nan(validator):
    old_export = {"input": "a", "score": 1.0, "threshold": 0.5, "abnormal": True, "percentile": 99.0, "model": "m",
                  "pixel_threshold": 1.0, "components": {"patch": 1.0}, "sensitivity": 1.0, "warnings": [],
                  "findings": []}
    with pytest.raises(jsonschema.ValidationError):
        validator.validate(old_export)
    with pytest.raises(ValueError):
        to_json({"score": float("nan")})
