"""Claim checks: a theorem's prediction compared with a measurement, recorded in a ledger.

A claim check compares a measured number with the paper's prediction under an explicit
threshold, prints predicted beside measured, appends a record to the chapter's ledger file and
raises ``AssertionError`` (listing every quantity) when the claim fails, so a failing claim
fails the notebook, the test suite and the strict book build.

The ledger is one JSON file per chapter in ``_build/claims/`` at the repository root
(``BOOK_CLAIMS_DIR`` overrides). ``python -m helpers.claims`` prints it as a table and exits 1
if any recorded claim failed (2 if there is nothing recorded).

Introduced in the chapter "Implicit bias of gradient descent"; used by every chapter.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from dataclasses import asdict, dataclass
from numbers import Real
from pathlib import Path
from typing import Any

OPS = ("<", "<=", ">", ">=", "==", "close")
_state: dict[str, Any] = {"chapter": "scratch", "mode": None, "seed": None}


@dataclass(frozen=True)
class ClaimRecord:
    """One checked claim, as stored in the ledger."""

    chapter: str
    claim: str
    paper: str
    measured: float
    op: str
    threshold: float
    passed: bool
    mode: str | None
    seed: int | None
    rtol: float = 0.0
    atol: float = 0.0
    note: str = ""

    def describe(self) -> str:
        """One line: status, claim, measured, relation, threshold, paper."""
        status = "PASS" if self.passed else "FAIL"
        rel = self.op
        if self.op == "close":
            rel = f"≈ (rtol={self.rtol:g}, atol={self.atol:g})"
        return (f"{status}  {self.claim}: measured {self.measured:.6g} {rel} "
                f"predicted {self.threshold:.6g}  [{self.paper}]")


def find_root(start: Path | None = None) -> Path | None:
    """The nearest folder at or above ``start`` (default: cwd) holding ``_config.yml``."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "_config.yml").is_file():
            return folder
    return None


def claims_dir() -> Path:
    """Where ledger files go: ``BOOK_CLAIMS_DIR``, else ``<book root>/_build/claims``."""
    override = os.environ.get("BOOK_CLAIMS_DIR", "").strip()
    if override:
        return Path(override)
    root = find_root()
    return (root if root is not None else Path.cwd()) / "_build" / "claims"


def _ledger_path(chapter: str) -> Path:
    return claims_dir() / f"{chapter}.json"


def begin_chapter(name: str, cfg: Any) -> None:
    """Make ``name`` the current chapter and start its ledger file empty."""
    _state.update(chapter=name, mode=getattr(cfg, "mode", None), seed=getattr(cfg, "seed", None))
    path = _ledger_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("[]\n")


def _as_float(value: Any, name: str) -> float:
    if hasattr(value, "item") and callable(value.item):
        try:
            value = value.item()
        except (ValueError, RuntimeError):
            raise TypeError(f"{name} must be a single number, got an array") from None
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    return float(value)


def _holds(measured: float, op: str, threshold: float, rtol: float, atol: float) -> bool:
    if math.isnan(measured):
        return False
    if op == "close":
        return abs(measured - threshold) <= atol + rtol * abs(threshold)
    return {
        "<": measured < threshold,
        "<=": measured <= threshold,
        ">": measured > threshold,
        ">=": measured >= threshold,
        "==": measured == threshold,
    }[op]


def check_claim(
    claim: str,
    measured: Any,
    op: str,
    threshold: Any,
    *,
    paper: str,
    rtol: float = 0.0,
    atol: float = 0.0,
    note: str = "",
) -> ClaimRecord:
    """Check ``measured <op> threshold``, print it, record it, and raise if it fails.

    Args:
        claim: what is claimed, in words (one short sentence).
        measured: the measured number (Python, NumPy or 0-d torch scalar).
        op: one of ``<``, ``<=``, ``>``, ``>=``, ``==`` or ``close``
            (``|measured - threshold| <= atol + rtol * |threshold|``).
        threshold: the paper's prediction or the bound it implies.
        paper: the BibTeX key of the paper in ``book/references.bib``.
        rtol, atol: tolerances for ``close`` (ignored otherwise); say in the chapter where
            they come from.
        note: optional context stored with the record.

    Returns:
        The :class:`ClaimRecord` appended to the ledger.

    Raises:
        AssertionError: when the claim fails, listing every quantity.
        ValueError / TypeError: for an unknown ``op``, non-numbers or bad tolerances.
    """
    if op not in OPS:
        raise ValueError(f"op must be one of {OPS}, got {op!r}")
    if not isinstance(claim, str) or not claim.strip():
        raise ValueError("claim must be a non-empty string")
    if not isinstance(paper, str) or not paper.strip():
        raise ValueError("paper must be the BibTeX key of the paper making the claim")
    m = _as_float(measured, "measured")
    t = _as_float(threshold, "threshold")
    rtol, atol = _as_float(rtol, "rtol"), _as_float(atol, "atol")
    if rtol < 0 or atol < 0:
        raise ValueError(f"rtol and atol must be non-negative, got rtol={rtol}, atol={atol}")
    if op == "close" and rtol == 0 and atol == 0:
        raise ValueError("op 'close' needs rtol or atol > 0; use '==' for exact equality")
    record = ClaimRecord(
        chapter=_state["chapter"], claim=claim, paper=paper, measured=m, op=op, threshold=t,
        passed=_holds(m, op, t, rtol, atol), mode=_state["mode"], seed=_state["seed"],
        rtol=rtol, atol=atol, note=note,
    )
    _append(record)
    print(record.describe())
    if not record.passed:
        raise AssertionError(
            f"claim failed in chapter {record.chapter!r}: {claim!r}; measured={m!r} op={op!r} "
            f"threshold={t!r} rtol={rtol!r} atol={atol!r} paper={paper!r} "
            f"mode={record.mode!r} seed={record.seed!r}"
        )
    return record


def _append(record: ClaimRecord) -> None:
    path = _ledger_path(record.chapter)
    path.parent.mkdir(parents=True, exist_ok=True)
    records = json.loads(path.read_text()) if path.is_file() else []
    records.append(asdict(record))
    path.write_text(json.dumps(records, indent=1) + "\n")


def load_ledger(directory: Path | str | None = None) -> list[ClaimRecord]:
    """All records in ``directory`` (default: ``claims_dir()``), chapter files in name order."""
    folder = Path(directory) if directory is not None else claims_dir()
    records: list[ClaimRecord] = []
    for path in sorted(folder.glob("*.json")):
        records.extend(ClaimRecord(**row) for row in json.loads(path.read_text()))
    return records


def format_table(records: list[ClaimRecord], *, markdown: bool = False) -> str:
    """The ledger as a text (or Markdown) table: chapter, claim, measured, op, threshold, status."""
    head = ["chapter", "claim", "measured", "op", "threshold", "paper", "status"]
    rows = [[r.chapter, r.claim, f"{r.measured:.4g}", r.op if r.op != "close" else "≈",
             f"{r.threshold:.4g}", r.paper, "pass" if r.passed else "FAIL"] for r in records]
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows, strict=False)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*head), fmt.format(*("-" * w for w in widths))]
                     + [fmt.format(*row) for row in rows])


def main(argv: list[str] | None = None) -> int:
    """Print the ledger; return 1 if any claim failed, 2 if nothing is recorded."""
    parser = argparse.ArgumentParser(prog="python -m helpers.claims",
                                     description="Print the claims ledger.")
    parser.add_argument("--dir", default=None, help="ledger folder (default: BOOK_CLAIMS_DIR "
                        "or _build/claims at the book root)")
    args = parser.parse_args(argv)
    folder = Path(args.dir) if args.dir else claims_dir()
    records = load_ledger(folder)
    if not records:
        print(f"no claims recorded in {folder}")
        return 2
    print(format_table(records))
    failed = [r for r in records if not r.passed]
    print(f"\n{len(records)} claims, {len(records) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0
