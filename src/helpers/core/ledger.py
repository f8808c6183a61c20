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
#: What a check is. ``paper``: the cited paper's own claim; ``derived``: a consequence derived in
#: the book or a classical result (``paper=`` names its real source); ``sanity``: an identity or a
#: construction (two computations of one thing); ``not-reproduced``: the paper's prediction,
#: measured not to hold at the book's scale (recorded, does not fail the build; if the
#: prediction starts to hold the check fails so that the text gets updated).
KINDS = ("paper", "derived", "sanity", "not-reproduced")
_state: dict[str, Any] = {"chapter": "scratch", "mode": None, "seed": None}


@dataclass(frozen=True)
class ClaimRecord:
    """One checked claim, as stored in the ledger.

    ``holds`` is whether ``measured <op> threshold`` held; ``passed`` is the check's verdict:
    ``holds`` for every kind but ``not-reproduced``, where it is ``not holds``. ``margin`` is the
    signed distance of ``measured`` to the gate in units of ``scale`` (positive: on the side
    the prediction asks for). ``control_label`` / ``control_value`` are the negative control's.
    """

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
    kind: str = "paper"
    holds: bool | None = None
    margin: float | None = None
    scale: float | None = None
    control_label: str | None = None
    control_value: float | None = None
    no_control: str = ""

    @property
    def status(self) -> str:
        """``pass``, ``FAIL``, ``not reproduced`` or ``FAIL (now holds)``."""
        if self.kind == "not-reproduced":
            return "not reproduced" if self.passed else "FAIL (now holds)"
        return "pass" if self.passed else "FAIL"

    def describe(self) -> str:
        """One line: status, kind, claim, measured, relation, threshold, control, paper."""
        rel = self.op
        if self.op == "close":
            rel = f"≈ (rtol={self.rtol:g}, atol={self.atol:g})"
        control = ""
        if self.control_label is not None:
            control = f"; control ({self.control_label}) {self.control_value:.6g}"
        return (f"{self.status.upper()}  [{self.kind}] {self.claim}: measured {self.measured:.6g} "
                f"{rel} {self.threshold:.6g}{control}  [{self.paper}]")


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


def margin(measured: float, op: str, threshold: float, rtol: float = 0.0, atol: float = 0.0,
           scale: float | None = None) -> float:
    """Signed distance from ``measured`` to the gate, positive on the side the gate accepts.

    For ``<``/``<=`` it is ``threshold − measured``, for ``>``/``>=`` ``measured − threshold``,
    for ``close`` ``tolerance − |measured − threshold|`` and for ``==`` ``−|measured −
    threshold|``; divided by ``scale`` (one unit of the threshold's justification, e.g. one
    standard error) when given, else by ``|threshold|`` (1 when the threshold is 0), so margins
    of different claims compare as "how many units from failing". NaN for a NaN measurement.
    """
    if math.isnan(measured):
        return math.nan
    if op in ("<", "<="):
        gap = threshold - measured
    elif op in (">", ">="):
        gap = measured - threshold
    elif op == "close":
        gap = atol + rtol * abs(threshold) - abs(measured - threshold)
    else:
        gap = 0.0 - abs(measured - threshold)
    unit = scale if scale is not None else (abs(threshold) or 1.0)
    return gap / unit


def check_claim(
    claim: str,
    measured: Any,
    op: str,
    threshold: Any,
    *,
    kind: str,
    paper: str,
    note: str,
    control: tuple[str, Any] | None = None,
    no_control: str = "",
    scale: Any = None,
    rtol: float = 0.0,
    atol: float = 0.0,
) -> ClaimRecord:
    """Check ``measured <op> threshold``, print it, record it, and raise if the check fails.

    Args:
        claim: what is claimed, in words (one short sentence).
        measured: the measured number (Python, NumPy or 0-d torch scalar).
        op: one of ``<``, ``<=``, ``>``, ``>=``, ``==`` or ``close``
            (``|measured - threshold| <= atol + rtol * |threshold|``).
        threshold: the prediction or the bound it implies.
        kind: one of :data:`KINDS`. ``paper``: the cited paper's own claim; ``derived``: a
            consequence the book derives or a classical result; ``sanity``: an identity or
            construction; ``not-reproduced``: the paper's prediction, measured not to hold here.
        paper: the BibTeX key of the claim's real source in ``book/references.bib`` (for
            ``derived`` the classical source, or the chapter's own derivation's key).
        note: where the threshold comes from: a derived constant, k standard errors of a stated
            estimator, or a stated convention.
        control: ``(label, value)``, the same statistic measured with one hypothesis of the
            theorem broken. It must fail the same gate, else ``ValueError`` ("the gate does
            not discriminate"). Required for ``paper`` checks unless ``no_control`` says why.
        no_control: for a ``paper`` check without a meaningful control (an exact identity the
            paper proves), why there is none.
        scale: one unit of the threshold's justification (e.g. one standard error), used to
            express the margin; default ``|threshold|``.
        rtol, atol: tolerances for ``close`` (ignored otherwise).

    Returns:
        The :class:`ClaimRecord` appended to the ledger.

    Raises:
        AssertionError: when the check fails (for ``not-reproduced``: when the paper's
            prediction now holds), listing every quantity.
        ValueError / TypeError: for an unknown ``op`` or ``kind``, non-numbers, bad tolerances,
            a missing note or control, or a control that passes the gate.
    """
    if op not in OPS:
        raise ValueError(f"op must be one of {OPS}, got {op!r}")
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if not isinstance(claim, str) or not claim.strip():
        raise ValueError("claim must be a non-empty string")
    if not isinstance(paper, str) or not paper.strip():
        raise ValueError("paper must be the BibTeX key of the claim's source")
    if not isinstance(note, str) or not note.strip():
        raise ValueError("note must say where the threshold comes from")
    if not isinstance(no_control, str):
        raise TypeError(f"no_control must be a string, got {type(no_control).__name__}")
    m = _as_float(measured, "measured")
    t = _as_float(threshold, "threshold")
    rtol, atol = _as_float(rtol, "rtol"), _as_float(atol, "atol")
    if rtol < 0 or atol < 0:
        raise ValueError(f"rtol and atol must be non-negative, got rtol={rtol}, atol={atol}")
    if op == "close" and rtol == 0 and atol == 0:
        raise ValueError("op 'close' needs rtol or atol > 0; use '==' for exact equality")
    unit = None if scale is None else _as_float(scale, "scale")
    if unit is not None and not unit > 0:
        raise ValueError(f"scale must be > 0, got {unit!r}")
    control_label = control_value = None
    if control is not None:
        if (not isinstance(control, tuple) or len(control) != 2
                or not isinstance(control[0], str) or not control[0].strip()):
            raise TypeError("control must be a (label, value) tuple with a non-empty label")
        control_label, control_value = control[0], _as_float(control[1], "control value")
        if _holds(control_value, op, t, rtol, atol):
            raise ValueError(
                f"the gate does not discriminate: the control ({control_label}) measures "
                f"{control_value!r}, which also satisfies {op} {t!r} for claim {claim!r}")
    elif kind == "paper" and not no_control.strip():
        raise ValueError("a paper check needs control=(label, value), or no_control= saying "
                         "why it has none")
    holds = _holds(m, op, t, rtol, atol)
    record = ClaimRecord(
        chapter=_state["chapter"], claim=claim, paper=paper, measured=m, op=op, threshold=t,
        passed=(not holds) if kind == "not-reproduced" else holds, mode=_state["mode"],
        seed=_state["seed"], rtol=rtol, atol=atol, note=note, kind=kind, holds=holds,
        margin=margin(m, op, t, rtol, atol, unit), scale=unit, control_label=control_label,
        control_value=control_value, no_control=no_control,
    )
    _append(record)
    print(record.describe())
    if not record.passed:
        what = ("the paper's prediction now holds: update the text and the kind"
                if kind == "not-reproduced" else "claim failed")
        raise AssertionError(
            f"{what} in chapter {record.chapter!r}: {claim!r}; kind={kind!r} measured={m!r} "
            f"op={op!r} threshold={t!r} rtol={rtol!r} atol={atol!r} paper={paper!r} "
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


def counts(records: list[ClaimRecord]) -> dict[str, int]:
    """How many records of each kind (every kind present, zeros included)."""
    return {kind: sum(r.kind == kind for r in records) for kind in KINDS}


def format_table(records: list[ClaimRecord], *, markdown: bool = False) -> str:
    """The ledger as a text (or Markdown) table, one row per check."""
    head = ["chapter", "kind", "claim", "measured", "op", "threshold", "control", "paper",
            "status"]
    rows = [[r.chapter, r.kind, r.claim, f"{r.measured:.4g}", r.op if r.op != "close" else "≈",
             f"{r.threshold:.4g}",
             "" if r.control_label is None else f"{r.control_label}: {r.control_value:.4g}",
             r.paper, r.status] for r in records]
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows, strict=False)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*head), fmt.format(*("-" * w for w in widths))]
                     + [fmt.format(*row) for row in rows])


def format_counts(records: list[ClaimRecord]) -> str:
    """Per chapter: paper / derived / sanity / not-reproduced counts and failures."""
    chapters = sorted({r.chapter for r in records})
    head = ["chapter", *KINDS, "failed"]
    rows = []
    for chapter in [*chapters, "all"]:
        rs = records if chapter == "all" else [r for r in records if r.chapter == chapter]
        rows.append([chapter, *map(str, counts(rs).values()),
                     str(sum(not r.passed for r in rs))])
    widths = [max(len(x) for x in col) for col in zip(head, *rows, strict=False)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*head), fmt.format(*("-" * w for w in widths))]
                     + [fmt.format(*row) for row in rows])


def main(argv: list[str] | None = None) -> int:
    """Print the ledger and its counts by kind; return 1 if any check failed, 2 if empty."""
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
    print()
    print(format_counts(records))
    failed = [r for r in records if not r.passed]
    n = counts(records)
    print(f"\n{len(records)} checks: {n['paper']} paper, {n['derived']} derived, "
          f"{n['sanity']} sanity, {n['not-reproduced']} not reproduced; "
          f"{len(records) - len(failed)} as expected, {len(failed)} failed")
    return 1 if failed else 0
