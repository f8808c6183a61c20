"""Claim checks record, print and raise; the ledger reads back and reports failures."""

import json

import numpy as np
import pytest
import torch

from helpers import check_claim, load_ledger, start_chapter
from helpers.core.ledger import claims_dir, format_table, main


def test_passing_claim_is_recorded(capsys):
    start_chapter("unit-ledger", quiet=True)
    rec = check_claim("x is small", torch.tensor(1e-9), "<", 1e-6, kind="sanity",
                      paper="key2020", note="a tolerance")
    assert rec.passed and rec.chapter == "unit-ledger" and rec.measured == pytest.approx(1e-9)
    out = capsys.readouterr().out
    assert "PASS" in out and "1e-09" in out and "1e-06" in out and "key2020" in out
    rows = json.loads((claims_dir() / "unit-ledger.json").read_text())
    assert rows[0]["op"] == "<" and rows[0]["passed"] is True
    assert set(rows[0]) >= {"chapter", "claim", "paper", "measured", "op", "threshold",
                            "passed", "mode", "seed"}


def test_failing_claim_raises_listing_quantities_and_is_recorded():
    start_chapter("unit-ledger", quiet=True)
    with pytest.raises(AssertionError) as err:
        check_claim("ratio is large", np.float64(2.5), ">=", 3, kind="sanity",
                      paper="key2020", note="a tolerance")
    msg = str(err.value)
    for part in ("ratio is large", "2.5", ">=", "3", "key2020", "unit-ledger"):
        assert part in msg
    assert [r.passed for r in load_ledger()] == [False]


@pytest.mark.parametrize("measured,op,threshold,expected", [
    (1, "<", 2, True), (2, "<", 2, False), (2, "<=", 2, True), (3, ">", 2, True),
    (2, ">", 2, False), (2, ">=", 2, True), (5, "==", 5, True), (5, "==", 6, False),
    (float("nan"), "<", 1, False), (float("nan"), ">", 1, False),
])
def test_operators(measured, op, threshold, expected):
    start_chapter("unit-ops", quiet=True)
    if expected:
        assert check_claim("c", measured, op, threshold, kind="sanity", paper="k", note="n").passed
    else:
        with pytest.raises(AssertionError):
            check_claim("c", measured, op, threshold, kind="sanity", paper="k", note="n")


def test_close_uses_both_tolerances():
    start_chapter("unit-close", quiet=True)
    assert check_claim("c", 1.04, "close", 1.0, kind="sanity", paper="k",
                        note="n", rtol=0.05).passed
    assert check_claim("c", 0.001, "close", 0.0, kind="sanity", paper="k",
                        note="n", atol=0.01).passed
    with pytest.raises(AssertionError):
        check_claim("c", 1.06, "close", 1.0, kind="sanity", paper="k",
                        note="n", rtol=0.05)
    with pytest.raises(ValueError, match="rtol or atol"):
        check_claim("c", 1.0, "close", 1.0, kind="sanity", paper="k", note="n")


@pytest.mark.parametrize("kwargs,error", [
    (dict(op="~"), ValueError), (dict(measured="big"), TypeError),
    (dict(measured=torch.ones(3)), TypeError), (dict(paper=""), ValueError),
    (dict(claim=" "), ValueError), (dict(rtol=-1.0), ValueError),
    (dict(kind="theorem"), ValueError), (dict(note=" "), ValueError),
    (dict(scale=0.0), ValueError), (dict(control=("", 3.0)), TypeError),
    (dict(control=[("x", 3.0)]), TypeError), (dict(kind="paper"), ValueError),
])
def test_bad_input(kwargs, error):
    args = dict(claim="c", measured=1.0, op="<", threshold=2.0, kind="sanity", paper="k",
                note="n") | kwargs
    with pytest.raises(error):
        check_claim(args.pop("claim"), args.pop("measured"), args.pop("op"),
                    args.pop("threshold"), **args)


def test_start_chapter_resets_its_ledger_and_rejects_bad_names():
    start_chapter("unit-reset", quiet=True)
    check_claim("c", 1, "<", 2, kind="sanity", paper="k", note="n")
    start_chapter("unit-reset", quiet=True)
    assert load_ledger() == []
    with pytest.raises(ValueError, match="name"):
        start_chapter("Bad Name")


def test_cli_exit_codes(tmp_path, capsys):
    assert main(["--dir", str(tmp_path / "empty")]) == 2
    start_chapter("unit-cli", quiet=True)
    check_claim("good", 1, "<", 2, kind="sanity", paper="k", note="n")
    assert main([]) == 0
    with pytest.raises(AssertionError):
        check_claim("bad", 3, "<", 2, kind="sanity", paper="k", note="n")
    assert main([]) == 1
    out = capsys.readouterr().out
    assert "good" in out and "bad" in out and "FAIL" in out
    assert "good" in format_table(load_ledger()) and "| bad |" in format_table(
        load_ledger(), markdown=True)


def test_kind_and_note_are_required():
    start_chapter("unit-kinds", quiet=True)
    with pytest.raises(TypeError, match="kind"):
        check_claim("c", 1, "<", 2, paper="k", note="n")
    with pytest.raises(TypeError, match="note"):
        check_claim("c", 1, "<", 2, kind="sanity", paper="k")


@pytest.mark.parametrize("kind", ["paper", "derived", "sanity", "not-reproduced"])
def test_every_kind_is_recorded_with_its_status(kind):
    start_chapter("unit-kinds", quiet=True)
    extra = {"control": ("broken hypothesis", 0.5)} if kind == "paper" else {}
    measured = 0.1 if kind == "not-reproduced" else 3.0  # the prediction ">= 1" fails / holds
    rec = check_claim("c", measured, ">=", 1.0, kind=kind, paper="k", note="n", **extra)
    assert rec.kind == kind and rec.passed
    assert rec.holds is (kind != "not-reproduced")
    assert rec.status == ("not reproduced" if kind == "not-reproduced" else "pass")
    assert load_ledger()[-1] == rec


def test_a_paper_check_needs_a_control_or_a_reason():
    start_chapter("unit-control", quiet=True)
    with pytest.raises(ValueError, match="control"):
        check_claim("c", 3.0, ">", 1.0, kind="paper", paper="k", note="n")
    rec = check_claim("c", 3.0, ">", 1.0, kind="paper", paper="k", note="n",
                      no_control="an exact identity")
    assert rec.passed and rec.control_label is None and rec.no_control == "an exact identity"
    rec = check_claim("c", 3.0, ">", 1.0, kind="paper", paper="k", note="n",
                      control=("depth 1", 0.2))
    assert (rec.control_label, rec.control_value) == ("depth 1", 0.2)
    assert "control (depth 1) 0.2" in rec.describe()


@pytest.mark.parametrize("kind", ["paper", "derived"])
def test_a_control_that_passes_the_gate_is_rejected(kind):
    start_chapter("unit-control", quiet=True)
    with pytest.raises(ValueError, match="does not discriminate"):
        check_claim("c", 3.0, ">", 1.0, kind=kind, paper="k", note="n",
                    control=("broken hypothesis", 2.0))
    with pytest.raises(ValueError, match="does not discriminate"):
        check_claim("c", 1.0, "close", 1.0, kind=kind, paper="k", note="n", rtol=0.1,
                    control=("broken hypothesis", 1.05))
    assert load_ledger() == []  # nothing recorded for a gate that cannot fail


def test_not_reproduced_is_strict():
    start_chapter("unit-xfail", quiet=True)
    rec = check_claim("rho > 0.3", 0.1, ">", 0.3, kind="not-reproduced", paper="k", note="n")
    assert rec.passed and not rec.holds
    with pytest.raises(AssertionError, match="now holds"):
        check_claim("rho > 0.3", 0.5, ">", 0.3, kind="not-reproduced", paper="k", note="n")
    assert [r.status for r in load_ledger()] == ["not reproduced", "FAIL (now holds)"]
    assert main([]) == 1


def test_margins_are_signed_distances_in_units_of_scale():
    start_chapter("unit-margin", quiet=True)
    assert check_claim("c", 0.9, ">=", 0.8, kind="sanity", paper="k", note="n",
                       scale=0.05).margin == pytest.approx(2.0)
    assert check_claim("c", 0.3, "<", 0.5, kind="sanity", paper="k", note="n"
                       ).margin == pytest.approx(0.4)
    assert check_claim("c", 1.01, "close", 1.0, kind="sanity", paper="k", note="n", atol=0.05,
                       scale=0.01).margin == pytest.approx(4.0)
    assert check_claim("c", 0, "==", 0, kind="sanity", paper="k", note="n").margin == 0.0


def test_the_cli_counts_each_kind(capsys):
    start_chapter("unit-count", quiet=True)
    check_claim("p", 2, ">", 1, kind="paper", paper="k", note="n", control=("c", 0))
    check_claim("d", 2, ">", 1, kind="derived", paper="k", note="n")
    check_claim("s", 2, ">", 1, kind="sanity", paper="k", note="n")
    check_claim("x", 0, ">", 1, kind="not-reproduced", paper="k", note="n")
    assert main([]) == 0
    out = capsys.readouterr().out
    assert "1 paper, 1 derived, 1 sanity, 1 not reproduced" in out
    assert "not reproduced" in format_table(load_ledger())
