"""Every claim check in every chapter says what it is: its kind, where its threshold comes from,
and, for the paper's own claims, the negative control that the same gate rejects."""

import ast
import re
from pathlib import Path

import jupytext
import pytest
import yaml

from helpers import KINDS

ROOT = Path(__file__).resolve().parents[1]
TOC = yaml.safe_load((ROOT / "_toc.yml").read_text())
CHAPTERS = [c["file"] for part in TOC["parts"] for c in part["chapters"]
            if len(Path(c["file"]).parts) == 3]


def chapter_code(chapter: str) -> str:
    """The chapter's code cells as one Python module (IPython magics blanked)."""
    nb = jupytext.read(ROOT / f"{chapter}.md")
    cells = [c.source for c in nb.cells if c.cell_type == "code"]
    return "\n".join(re.sub(r"^(\s*)[%!].*$", r"\1pass", c, flags=re.M) for c in cells)


def claim_calls(source: str) -> list[ast.Call]:
    """Every call of ``check_claim`` (as ``helpers.check_claim`` or a bare name)."""
    calls = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", None)
            if name == "check_claim":
                calls.append(node)
    return calls


def keywords(call: ast.Call) -> dict[str, ast.expr]:
    return {k.arg: k.value for k in call.keywords if k.arg}


def problems(call: ast.Call) -> list[str]:
    """What a single check lacks (empty when it states kind, note and, if paper, a control)."""
    kw, line = keywords(call), call.lineno
    found = []
    kind = kw.get("kind")
    if kind is None:
        found.append(f"line {line}: no kind=")
    elif isinstance(kind, ast.Constant) and kind.value not in KINDS:
        found.append(f"line {line}: kind={kind.value!r} is not one of {KINDS}")
    note = kw.get("note")
    if note is None or (isinstance(note, ast.Constant) and not str(note.value).strip()):
        found.append(f"line {line}: no note= saying where the threshold comes from")
    if (isinstance(kind, ast.Constant) and kind.value == "paper"
            and "control" not in kw and "no_control" not in kw):
        found.append(f"line {line}: a paper check without control= or no_control=")
    return found


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_every_check_has_a_kind_a_note_and_a_control(chapter):
    calls = claim_calls(chapter_code(chapter))
    assert calls, f"{chapter} has no claim check"
    assert [p for c in calls for p in problems(c)] == []


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_the_central_claim_is_a_paper_check_with_a_control(chapter):
    kinds = [keywords(c) for c in claim_calls(chapter_code(chapter))]
    assert any(isinstance(k.get("kind"), ast.Constant) and k["kind"].value == "paper"
               and "control" in k for k in kinds), \
        f"{chapter} has no paper check with a negative control"


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_the_book_never_talks_about_its_own_process(chapter):
    text = (ROOT / f"{chapter}.md").read_text()
    assert not re.search(r"\bissues?\b", text, re.I), "a chapter never mentions issues"


def test_the_rules_catch_a_check_without_kind_note_or_control():
    code = ('helpers.check_claim("a", 1, "<", 2, paper="k")\n'
            'helpers.check_claim("b", 1, "<", 2, kind="paper", paper="k", note="n")\n'
            'helpers.check_claim("c", 1, "<", 2, kind="guess", paper="k", note="")\n'
            'helpers.check_claim("d", 1, "<", 2, kind="paper", paper="k", note="n",'
            ' control=("x", 3))\n')
    found = [p for c in claim_calls(code) for p in problems(c)]
    assert found == ["line 1: no kind=", "line 1: no note= saying where the threshold comes from",
                     "line 2: a paper check without control= or no_control=",
                     f"line 3: kind='guess' is not one of {KINDS}",
                     "line 3: no note= saying where the threshold comes from"]
