"""The benchmark's pieces run and report what they claim (no timing is asserted)."""

import json

import nbformat
import pytest
import torch

from helpers import bench


def test_training_flops_formula():
    # one layer 64 -> 10 on n samples: forward 2*n*64*10, backward only the weight gradient
    assert bench.training_flops([64, 10], n=5, steps=1, models=1) == 2 * 5 * 64 * 10 * 2
    two = bench.training_flops([64, 64, 10], n=5, steps=3, models=2)
    assert two == (2 * 5 * 64 * 64 * 2 + 2 * 5 * 64 * 10 * 3) * 3 * 2


def test_batched_benchmark_reports_consistent_ratios():
    threads = torch.get_num_threads()
    out = bench.batched_benchmark(models=2, steps=2, repeats=1)
    with pytest.raises(ValueError, match="repeats"):
        bench.batched_benchmark(repeats=0)
    assert out["batched_speedup"] == pytest.approx(out["one_by_one_s"] / out["batched_s"])
    assert 0 < out["batched_flops_fraction"] and out["matmul_flops_per_s"] > 0
    assert "batched_speedup_minibatch" in out
    best = min(out["one_by_one_s"], out["one_by_one_1thread_s"])
    assert out["batched_speedup_vs_best"] == pytest.approx(best / out["batched_s"])
    # the ceiling is the peak rate over the best one-by-one rate, for the same FLOPs
    assert out["speedup_ceiling"] == pytest.approx(
        out["matmul_flops_per_s"] / out["one_by_one_flops_per_s"])
    assert out["one_by_one_flops_per_s"] * best == pytest.approx(
        out["batched_flops_per_s"] * out["batched_s"])
    assert torch.get_num_threads() == threads  # the one-thread run restores the setting
    for peer in ("torch_func", "stacked_autograd"):
        assert out[f"speedup_vs_{peer}"] == pytest.approx(out[f"{peer}_s"] / out["batched_s"])
        assert out[f"speedup_vs_{peer}_minibatch"] == pytest.approx(
            out[f"{peer}_minibatch_s"] / out["batched_minibatch_s"])
    assert "torch.func" in bench.format_report(out | {
        "device": "cpu", "torch": "x", "threads": 1, "machine": "m", "mode": "quick",
        "date": "d"})


def test_time_notebook_runs_a_fresh_kernel(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x = sum(range(10))\nassert x == 45")]
    good = tmp_path / "good.ipynb"
    nbformat.write(nb, good)
    row = bench.time_notebook(good)
    assert row["ok"] and row["seconds"] > 0 and row["peak_mb"] > 10
    nb.cells = [nbformat.v4.new_code_cell("raise ValueError('boom')")]
    bad = tmp_path / "bad.ipynb"
    nbformat.write(nb, bad)
    failed = bench.time_notebook(bad)
    assert not failed["ok"] and "boom" in failed["error"]
    nb.cells = [nbformat.v4.new_code_cell("import os\nassert os.environ['OMP_NUM_THREADS'] == '1'")]
    one = tmp_path / "one.ipynb"
    nbformat.write(nb, one)
    assert bench.time_notebook(one, threads=1)["ok"]
    with pytest.raises(ValueError, match="threads"):
        bench.time_notebook(one, threads=0)


def test_report_format_and_json(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(bench, "batched_benchmark", lambda **kw: {
        "one_by_one_s": 2.0, "batched_s": 1.0, "batched_speedup": 2.0,
        "batched_flops_per_s": 1e9, "matmul_flops_per_s": 4e9, "batched_flops_fraction": 0.25,
        "one_by_one_minibatch_s": 5.0, "batched_minibatch_s": 1.0,
        "batched_speedup_minibatch": 5.0})
    assert bench.main(["--no-notebooks"]) == 0
    report = json.loads((tmp_path / "_build" / "bench.json").read_text())
    assert report["batched_speedup"] == 2.0 and "torch" in report and "threads" in report
    assert "2.00x" in bench.format_report(report)


def test_report_lists_notebooks_and_their_peak_memory():
    report = {"device": "cpu", "torch": "x", "threads": 2, "machine": "m", "mode": "quick",
              "date": "d", "one_by_one_s": 3.0, "one_by_one_1thread_s": 2.0, "batched_s": 1.0,
              "batched_speedup": 3.0, "batched_speedup_vs_best": 2.0, "speedup_ceiling": 4.0,
              "batched_speedup_minibatch": 9.0, "batched_speedup_minibatch_vs_best": 5.0,
              "batched_flops_fraction": 0.5, "batched_flops_per_s": 1e9,
              "matmul_flops_per_s": 2e9,
              "notebooks": [{"notebook": "book/a/x.ipynb", "seconds": 3.0, "ok": True,
                             "peak_mb": 900.0},
                            {"notebook": "book/a/y.ipynb", "seconds": 5.0, "ok": True,
                             "peak_mb": 300.0}],
              "notebooks_total_s": 8.0, "slowest_notebook_peak_mb": 300.0}
    text = bench.format_report(report)
    assert "2.00x" in text and "4.00x" in text and "5.00x" in text
    assert "book/a/y.ipynb" in text and "8.0 s" in text and "largest 900 MB" in text
