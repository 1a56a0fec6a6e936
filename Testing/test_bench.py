"""`sslanomaly-bench` in its quick mode writes the results file and its JSON with every section
(figures are not checked here: timings on a shared machine are not test material)."""

import json
import subprocess

from conftest import DATA, REPO, data_dir
from sslanomaly_bench.report import SECTIONS

BENCH = str(REPO / ".venv" / "bin" / "sslanomaly-bench")
MAY_SKIP = {"long_batch", "gpu", "dask"}  # not asked for in quick mode; no CUDA device; dask not installed


def test_quick_bench_writes_every_section(small_model, tmp_path):
    data_dir("kermany_fullres")
    out = tmp_path / "benchmarks.md"
    r = subprocess.run([BENCH, "--quick", "--model", str(small_model), "--data", str(DATA),
                        "--out", str(out)], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr
    results = json.loads(out.with_suffix(".json").read_text())
    text = out.read_text()
    assert results["command"].startswith("sslanomaly-bench --quick") and results["command"] in text
    assert results["machine"]["logical_cpus"] >= 1 and "loadavg_1_5_15" in results["load_before"]
    for name, title in SECTIONS.items():
        assert title in text
        section = results[name]
        assert "error" not in section, f"{name}: {section['error']}"
        assert "skipped" not in section or name in MAY_SKIP, f"{name}: {section['skipped']}"
    assert {t["target"].split(",")[0] for t in results["targets"]} >= {"marginal seconds per radiograph",
                                                                      "start + model load", "peak resident memory"}
    assert "Scale-out beyond one machine" in text and "torchrun" in text


def test_bench_without_data_says_so_and_writes_nothing(tmp_path):
    out = tmp_path / "benchmarks.md"
    r = subprocess.run([BENCH, "--quick", "--data", str(tmp_path / "absent"), "--out", str(out)],
                       capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0
    assert "bench skipped" in r.stderr and "kermany_fullres" in r.stderr
    assert not out.exists()


def test_a_misspelt_section_is_refused_naming_it_and_writes_nothing(tmp_path):
    """`--sections hostlie_inputs` measured nothing, exited 0 and wrote a report of no figure, stamped
    as measured by that command (over docs/benchmarks.md by default)."""
    out = tmp_path / "benchmarks.md"
    r = subprocess.run([BENCH, "--sections", "hostile_inputs,hostlie_inputs", "--data", str(tmp_path), "--out", str(out)],
                       capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 2 and "no such section: hostlie_inputs" in r.stderr and "unreadable" in r.stderr
    assert not out.exists() and not out.with_suffix(".json").exists()


def test_sections_that_need_no_data_run_without_it(pediatric_model, tmp_path):
    """On a machine without ../shared/data, `--sections unreadable` (which writes its own inputs) was
    skipped as 'no full-resolution radiographs' with everything else."""
    out = tmp_path / "benchmarks.md"
    r = subprocess.run([BENCH, "--quick", "--sections", "unreadable", "--model", str(pediatric_model),
                        "--data", str(tmp_path / "absent"), "--out", str(out)], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr
    assert json.loads(out.with_suffix(".json").read_text())["unreadable"]["failures_logged"] == 50


def test_counts_out_of_range_are_refused_naming_the_option(tmp_path):
    """`--images 0`, `--repeats 0` or `--long -3` ran, and rewrote the report with a section that said
    only 'IndexError: list index out of range' or 'min() arg is an empty sequence'."""
    out = tmp_path / "benchmarks.md"
    for option, value in (("--images", "0"), ("--repeats", "0"), ("--long", "-3"), ("--train-steps", "x")):
        r = subprocess.run([BENCH, option, value, "--data", str(tmp_path), "--out", str(out)],
                           capture_output=True, text=True, cwd=REPO)
        assert r.returncode == 2 and f"argument {option}: '{value}': a whole number of" in r.stderr, r.stderr
    assert not out.exists()


def test_the_reports_in_docs_are_what_the_bench_writes_from_their_json():
    """docs/benchmarks.md was edited by hand (the NFS re-check of a Dask worker, in its Scale-out text)
    while the bench's report.py was not: the next run would have dropped it. Each report is exactly
    what `render` writes from the JSON beside it."""
    from sslanomaly_bench.report import render

    for report in sorted((REPO / "docs").glob("benchmarks*.md")):
        results = json.loads(report.with_suffix(".json").read_text(encoding="utf-8"))
        assert render(results) == report.read_text(encoding="utf-8"), f"{report.name}: rerun the bench, or render"


def test_the_scale_out_text_says_torchrun_trains_as_the_readme_does():
    """The bench's Scale-out text (every docs/benchmarks*.md) said training under torchrun was 'Not
    implemented' and how one would add it (the learning rate scaled to the global batch, ranks loading
    last.safetensors), while README's "Train on several GPUs" documents it working (training/distributed.py)."""
    from sslanomaly_bench.report import SCALE_OUT

    torchrun = SCALE_OUT.split("**Training on several GPUs (`torchrun`).**", 1)[1]
    assert "### Train on several GPUs" in (REPO / "README.md").read_text(encoding="utf-8")
    assert "Not implemented" not in torchrun and "`training/distributed.py`" in torchrun
    assert (REPO / "SSLAnomaly" / "SSLAnomalyLib" / "training" / "distributed.py").is_file()


def test_a_report_with_sections_carried_over_does_not_say_this_run_measured_every_figure():
    """docs/benchmarks.md (`--sections stages,batch`) said 'Every figure below was measured by this
    command' above nine sections each marked 'Not measured by this run: carried over'."""
    from sslanomaly_bench.report import render

    results = json.loads((REPO / "docs" / "benchmarks.json").read_text(encoding="utf-8"))
    assert results["carried_over"], "docs/benchmarks.json no longer carries a section over: take a stored copy"
    header = render(results).split(f"    {results['command']}", 1)[0]
    assert "except those of the sections marked as carried over from an earlier run" in header
    del results["carried_over"]
    assert "except" not in render(results).split(f"    {results['command']}", 1)[0]
