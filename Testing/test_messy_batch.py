"""Issue 6's acceptance: every kind of messy input in one `sslanomaly detect` batch. Readable inputs
get results (with the warnings their oddities call for), unreadable ones are named with a reason on
stderr and in failures.log, the exit status says something failed, memory stays bounded on a
10,000 x 10,000 image, and no patient identity appears in any log or non-DICOM output."""

import contextlib
import json
import subprocess
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from conftest import REPO
from messy_corpus import PATIENT_ID, PATIENT_NAME, REFUSED, write_dicom
from SSLAnomalyLib.core.reading.images import read_radiograph

SSLANOMALY = str(REPO / ".venv" / "bin" / "sslanomaly")
MAX_RSS_GB = 1.5  # the 10,000 x 10,000 image at full size in float32 would need well over this


def run_detect(args, tmp_path):
    """`sslanomaly detect` as a user runs it: (exit code, stdout, stderr, peak memory in GB).
    The peak is the kernel's high-water mark of the command itself (rusage would count the test
    process it was forked from), read from /proc while it runs; 0 where there is no /proc."""
    peak_kb = 0
    with open(tmp_path / "stdout", "w") as out, open(tmp_path / "stderr", "w") as err:
        proc = subprocess.Popen([SSLANOMALY, "detect", *map(str, args)], stdout=out, stderr=err, cwd=REPO)
        status = Path(f"/proc/{proc.pid}/status")
        while proc.poll() is None:
            with contextlib.suppress(OSError, ValueError, StopIteration):
                line = next(ln for ln in status.read_text().splitlines() if ln.startswith("VmHWM:"))
                peak_kb = max(peak_kb, int(line.split()[1]))
            time.sleep(0.05)
    return proc.returncode, (tmp_path / "stdout").read_text(), (tmp_path / "stderr").read_text(), peak_kb / 2**20


def identity_leaks(text: str) -> list[str]:
    parts = [PATIENT_ID, "19791231", *PATIENT_NAME.split("^")[:2]]
    return [p for p in parts if p in text]


@pytest.fixture
def bad_identity_dicom(messy_corpus, tmp_path):
    """A DICOM whose identity values break the standard, so that pydicom quotes them in its
    warnings (a birth date that is not a date, an ID too long for its VR)."""
    folder, _ = messy_corpus
    path = write_dicom(tmp_path / "bad_identity.dcm", read_radiograph(folder / "mono2.dcm").pixels[0])
    ds = pydicom.dcmread(path)
    ds.add_new(0x00100030, "DA", "19791231X")
    ds.PatientID = PATIENT_ID * 6
    ds.save_as(path)
    return path


@pytest.mark.filterwarnings("ignore:.*VR (DA|LO):UserWarning")  # pydicom, while making bad_identity.dcm
def test_messy_corpus_in_one_batch(small_model, messy_corpus, bad_identity_dicom, tmp_path):
    folder, cases = messy_corpus
    out = tmp_path / "out"
    code, stdout, stderr, rss_gb = run_detect(["--model", small_model, "--out", out, "--quiet", folder,
                                               bad_identity_dicom], tmp_path)
    assert code == 1 and "Traceback" not in stderr
    logged = {row["input"]: row["reason"] for row in map(json.loads, (out / "failures.log").read_text().splitlines())}
    refused = {n for n, e in cases.items() if e.startswith(REFUSED)}
    assert set(logged) == {str(folder / n) for n in refused}
    for name, expect in cases.items():
        findings = out / f"{name.split('.')[0]}.findings.json"
        if name in refused:
            reason = logged[str(folder / name)]
            assert expect[len(REFUSED):] in reason and f"error: {folder / name}: {reason}" in stderr
            assert not findings.exists()
            continue
        result = json.loads(findings.read_text())
        assert not expect or any(expect in w for w in result["warnings"]), (name, result["warnings"])
        heat = sitk.GetArrayFromImage(sitk.ReadImage(str(out / f"{name.split('.')[0]}.heatmap.nrrd")))
        assert heat.reshape(-1, *heat.shape[-2:]).shape == read_radiograph(folder / name).shape, name
        assert np.isfinite(heat).all()
    warnings = json.loads((out / "bad_identity.findings.json").read_text())["warnings"]
    assert any("DICOM conformance" in w for w in warnings)
    scores = {n: json.loads((out / f"{n}.findings.json").read_text())["score"] for n in ("mono1", "mono2", "rle")}
    assert scores["mono1"] == pytest.approx(scores["mono2"], abs=1e-4) and scores["rle"] == scores["mono2"]
    if Path("/proc/self/status").exists():
        assert 0 < rss_gb < MAX_RSS_GB, f"peak memory {rss_gb:.2f} GB"
    texts = [stdout, stderr] + [p.read_text() for p in out.iterdir() if p.suffix in (".json", ".log")]
    assert not [leak for t in texts for leak in identity_leaks(t)]
