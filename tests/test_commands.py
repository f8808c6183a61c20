"""The seed sweep and the GPU check: their summaries, merges and comparisons (no notebooks run
here; the Makefile and CI run them on real chapters)."""

import json

import pytest

from helpers import check_claim, load_ledger, start_chapter
from helpers.gpu_check import compare, cpu_times, verdicts
from helpers.seeds import chapter_line, publish, select, summarise


def _records(values, kind="paper"):
    """One ledger per seed, each recording the claim 'x > 1' with the given value."""
    runs = {}
    for seed, value in values.items():
        start_chapter("unit-sweep", quiet=True)
        control = {"control": ("broken", 0.0)} if kind == "paper" else {}
        if value is not None:
            try:
                check_claim("x > 1", value, ">", 1.0, kind=kind, paper="k", note="n",
                            scale=0.5, **control)
            except AssertionError:
                pass
        runs[seed] = load_ledger()
    return runs


def test_summary_counts_passes_missing_seeds_and_margins():
    runs = _records({1000: 2.0, 1001: 0.5, 1002: None})  # pass, fail, never reached
    (row,) = summarise(runs, {})
    assert row["passed"] == 1 and row["failed_seeds"] == [1001, 1002]
    assert row["missing_seeds"] == [1002]
    assert (row["min"], row["max"]) == (0.5, 2.0)
    assert row["min_margin"] == pytest.approx(-1.0)  # (0.5 − 1) / 0.5
    entry = {"seeds": [1000, 1001, 1002], "claims": [row]}
    assert chapter_line(entry) == "paper claims hold in 1 of 3 seeds"


def test_not_reproduced_margins_measure_the_distance_from_holding():
    (row,) = summarise(_records({1: 0.5, 2: 0.9}, kind="not-reproduced"), {})
    assert row["passed"] == 2 and row["min_margin"] == pytest.approx(0.2)  # (1 − 0.9) / 0.5


def test_publish_merges_chapters(tmp_path):
    path = tmp_path / "seeds.json"
    publish({"a": {"x": 1}}, path, {"run": 1})
    publish({"b": {"x": 2}}, path, {"run": 2})
    publish({"a": {"x": 3}}, path, {"run": 3})
    data = json.loads(path.read_text())
    assert data["chapters"] == {"a": {"x": 3}, "b": {"x": 2}} and len(data["runs"]) == 3


def test_select_takes_file_or_ledger_names():
    chapters = {"resnet-rnn": "p1", "zico": "p2"}
    assert select(chapters, ["resnet_rnn"]) == {"resnet-rnn": "p1"}
    assert select(chapters, None) == chapters
    with pytest.raises(ValueError, match="chapter"):
        select(chapters, ["nope"])


def test_gpu_check_compares_verdicts_with_the_cpu_ledger(tmp_path, monkeypatch):
    assert compare({"a": True, "b": False}, {"a": True, "b": False})["match"] is True
    assert compare({"a": True}, {"a": False, "c": True})["differ"] == ["a", "c"]
    assert compare({"a": True}, None)["match"] is None
    monkeypatch.setenv("BOOK_CLAIMS_DIR", str(tmp_path / "claims"))
    start_chapter("unit-gpu", quiet=True)
    check_claim("c", 1, "<", 2, kind="sanity", paper="k", note="n")
    assert verdicts(tmp_path / "claims") == {"unit-gpu": {"c": True}}
    assert verdicts(tmp_path / "absent") == {}
    (tmp_path / "book").mkdir()
    (tmp_path / "book" / "bench.json").write_text(json.dumps(
        {"notebooks": [{"notebook": "book/depth/resnet_rnn.ipynb", "seconds": 3.5}]}))
    assert cpu_times(tmp_path) == {"resnet-rnn": 3.5}


def _tiny_book(root, names=("tiny",)):
    """A book of one-cell chapters, each checking that the seed is at least 1000."""
    import nbformat

    (root / "_config.yml").write_text("title: tiny\n")
    entries = "".join(f"      - file: book/part/{n}\n" for n in names)
    (root / "_toc.yml").write_text(
        "format: jb-book\nroot: intro\nparts:\n  - caption: P\n    chapters:\n" + entries)
    (root / "book" / "part").mkdir(parents=True)
    for name in names:
        code = (f'import helpers\ncfg = helpers.start_chapter("{name}", quiet=True)\n'
                'helpers.check_claim("the seed is at least 1000", cfg.seed, ">=", 1000,'
                ' kind="sanity", paper="k", note="the sweep starts at 1000")')
        nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)]),
                       root / "book" / "part" / f"{name}.ipynb")


def test_the_sweep_runs_a_tiny_chapter_on_a_two_worker_dask_cluster(tmp_path, monkeypatch):
    from helpers import seeds

    _tiny_book(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert seeds.main(["--seeds", "2", "--jobs", "2", "--publish"]) == 0
    published = json.loads((tmp_path / "book" / "seeds.json").read_text())
    entry = published["chapters"]["tiny"]
    assert entry["seeds"] == [1000, 1001] and entry["errors"] == {}
    (row,) = entry["claims"]
    assert (row["passed"], row["min"], row["max"]) == (2, 1000, 1001)
    assert published["runs"][0]["jobs"] == 2


def test_gpu_check_runs_two_chapters_quick_and_full_on_the_cpu(tmp_path, monkeypatch):
    """``make gpu-check``'s script end to end with ``--device cpu``: quick mode of both
    chapters compared with a CPU ledger (one agrees, one was recorded failing), full mode of
    both, and ``gpu.json`` written; a disagreement with the CPU ledger makes it exit 1."""
    from helpers import gpu_check

    _tiny_book(tmp_path, ("alpha", "beta"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BOOK_CLAIMS_DIR", str(tmp_path / "cpu-claims"))
    for name, seed_ok in (("alpha", True), ("beta", False)):
        start_chapter(name, quiet=True)
        try:
            check_claim("the seed is at least 1000", 1000 if seed_ok else 0, ">=", 1000,
                        kind="sanity", paper="k", note="the sweep starts at 1000")
        except AssertionError:
            pass
    status = gpu_check.main(["--device", "cpu", "--skip-unit", "--seed", "1000",
                             "--cpu-claims", "cpu-claims", "--budget", "400"])
    report = json.loads((tmp_path / "book" / "gpu.json").read_text())
    assert report["device"] == "cpu" and report["unit"] is None
    assert report["quick"]["alpha"]["match"] is True
    assert report["quick"]["beta"]["differ"] == ["the seed is at least 1000"]
    assert status == 1  # beta's verdict differs from its CPU ledger
    for mode in ("quick", "full"):
        for name in ("alpha", "beta"):
            record = report[mode][name]
            assert record["error"] is None and (record["claims"], record["passed"]) == (1, 1)
