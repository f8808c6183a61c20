"""Claim checks record, print and raise; the ledger reads back and reports failures."""

import json

import numpy as np
import pytest
import torch

from helpers import check_claim, load_ledger, start_chapter
from helpers.core.ledger import claims_dir, format_table, main


def test_passing_claim_is_recorded(capsys):
    start_chapter("unit-ledger", quiet=True)
    rec = check_claim("x is small", torch.tensor(1e-9), "<", 1e-6, paper="key2020")
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
        check_claim("ratio is large", np.float64(2.5), ">=", 3, paper="key2020")
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
        assert check_claim("c", measured, op, threshold, paper="k").passed
    else:
        with pytest.raises(AssertionError):
            check_claim("c", measured, op, threshold, paper="k")


def test_close_uses_both_tolerances():
    start_chapter("unit-close", quiet=True)
    assert check_claim("c", 1.04, "close", 1.0, paper="k", rtol=0.05).passed
    assert check_claim("c", 0.001, "close", 0.0, paper="k", atol=0.01).passed
    with pytest.raises(AssertionError):
        check_claim("c", 1.06, "close", 1.0, paper="k", rtol=0.05)
    with pytest.raises(ValueError, match="rtol or atol"):
        check_claim("c", 1.0, "close", 1.0, paper="k")


@pytest.mark.parametrize("kwargs,error", [
    (dict(op="~"), ValueError), (dict(measured="big"), TypeError),
    (dict(measured=torch.ones(3)), TypeError), (dict(paper=""), ValueError),
    (dict(claim=" "), ValueError), (dict(rtol=-1.0), ValueError),
])
def test_bad_input(kwargs, error):
    args = dict(claim="c", measured=1.0, op="<", threshold=2.0, paper="k") | kwargs
    with pytest.raises(error):
        check_claim(args.pop("claim"), args.pop("measured"), args.pop("op"),
                    args.pop("threshold"), **args)


def test_start_chapter_resets_its_ledger_and_rejects_bad_names():
    start_chapter("unit-reset", quiet=True)
    check_claim("c", 1, "<", 2, paper="k")
    start_chapter("unit-reset", quiet=True)
    assert load_ledger() == []
    with pytest.raises(ValueError, match="name"):
        start_chapter("Bad Name")


def test_cli_exit_codes(tmp_path, capsys):
    assert main(["--dir", str(tmp_path / "empty")]) == 2
    start_chapter("unit-cli", quiet=True)
    check_claim("good", 1, "<", 2, paper="k")
    assert main([]) == 0
    with pytest.raises(AssertionError):
        check_claim("bad", 3, "<", 2, paper="k")
    assert main([]) == 1
    out = capsys.readouterr().out
    assert "good" in out and "bad" in out and "FAIL" in out
    assert "good" in format_table(load_ledger()) and "| bad |" in format_table(
        load_ledger(), markdown=True)
