"""benchmarks/throughput.py end to end on a tiny row: a throughput row and
both peak-memory measurements (benchmarks/peak_memory.py) come back from
their own processes, into the printed tables and the JSON."""

import json
import math

from tests import harness

throughput = harness.benchmark_module("throughput")


def test_throughput_row_and_peak_memory_children_report_back(tmp_path, capsys):
    out = tmp_path / "t.json"
    throughput.main(["--quick", "--configs=digits_8px", "--variants=f32_fused",
                     "--steps=1", "--rounds=1", "--batch=8", "--memory_batch=16",
                     f"--out={out}"])
    result = json.loads(out.read_text())
    (row,) = result["rows"]
    assert "error" not in row, row
    assert (row["config"], row["variant"], row["batch"]) == ("digits_8px", "f32_fused", 8)
    assert row["full_images_per_s"] > 0 and row["bare_images_per_s"] > 0
    assert row["peak_rss_mb"] > 0
    plain, chunked = result["memory"]
    for measured, micro in ((plain, 0), (chunked, 1)):  # micro = batch / 16.
        assert "error" not in measured, measured
        assert measured["micro_batch_size"] == micro and measured["batch"] == 16
        assert measured["peak_rss_mb"] >= measured["rss_before_step_mb"] > 0
        assert math.isfinite(measured["loss"]) and measured["step_s"] > 0
    printed = capsys.readouterr().out
    assert "digits_8px" in printed and "memory (ResNet-18 32px)" in printed


def test_a_child_that_prints_no_result_is_reported_with_its_error(tmp_path):
    script = tmp_path / "fails.py"
    script.write_text("import sys\nsys.exit('no memory for this step')\n")
    peak_memory = harness.benchmark_module("peak_memory")
    result = peak_memory.run_child(str(script), [], {"batch": 4}, timeout=60)
    assert result["batch"] == 4
    assert result["error"].startswith("exit code 1") and "no memory for this step" in result["error"]
