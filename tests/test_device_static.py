"""Device-clean code, checked without a GPU: every torch factory call in the package and in every
chapter says where its tensor lives (``device=``), or moves it at once (``.to(...)``), or says
on its line why it stays on the CPU (``# cpu: <reason>``)."""

import ast
import re
from pathlib import Path

import jupytext
import pytest

ROOT = Path(__file__).resolve().parents[1]
FACTORIES = {"zeros", "ones", "empty", "full", "rand", "randn", "randint", "randperm", "arange",
             "linspace", "eye", "tensor", "as_tensor", "Generator"}
SOURCES = sorted((ROOT / "src" / "helpers").rglob("*.py"))
CHAPTERS = sorted(ROOT.glob("book/*/*.md"))


def _is_factory(call: ast.Call) -> str | None:
    f = call.func
    if (isinstance(f, ast.Attribute) and f.attr in FACTORIES and isinstance(f.value, ast.Name)
            and f.value.id == "torch"):
        return f.attr
    return None


def violations(source: str) -> list[str]:
    """``line N: torch.name(...)`` for every factory call that does not place its tensor."""
    tree = ast.parse(source)
    lines = source.splitlines()
    moved = set()
    for node in ast.walk(tree):  # torch.zeros(...).to(device): the inner call is placed
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "to" and isinstance(node.func.value, ast.Call)):
            moved.add(id(node.func.value))
    placing = {  # f64 = {"dtype": ..., "device": cfg.device}: torch.randn(..., **f64) is placed
        t.id for node in ast.walk(tree) if isinstance(node, ast.Assign)
        and isinstance(node.value, ast.Dict)
        and any(isinstance(k, ast.Constant) and k.value == "device" for k in node.value.keys)
        for t in node.targets if isinstance(t, ast.Name)}
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not (name := _is_factory(node)):
            continue
        if any(k.arg == "device" or (k.arg is None and isinstance(k.value, ast.Name)
                                      and k.value.id in placing) for k in node.keywords) \
                or id(node) in moved:
            continue
        span = lines[node.lineno - 1:(node.end_lineno or node.lineno)]
        if any(re.search(r"#\s*cpu:\s*\S", line) for line in span):
            continue
        found.append(f"line {node.lineno}: torch.{name}(...)")
    return found


def chapter_code(md: Path) -> str:
    nb = jupytext.read(md)
    cells = [c.source for c in nb.cells if c.cell_type == "code"]
    return "\n".join(re.sub(r"^(\s*)[%!].*$", r"\1pass", c, flags=re.M) for c in cells)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT / "src")))
def test_package_factories_place_their_tensors(path):
    assert violations(path.read_text()) == []


@pytest.mark.parametrize("md", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_factories_place_their_tensors(md):
    assert violations(chapter_code(md)) == []


@pytest.mark.parametrize("md", CHAPTERS, ids=lambda p: p.stem)
def test_chapters_that_use_torch_use_the_configured_device(md):
    code = chapter_code(md)
    if re.search(r"^import torch", code, re.M) and "cfg.device" not in code:
        text = md.read_text()
        assert re.search(r"CPU work|on the CPU", text), \
            "a chapter using torch passes cfg.device, or says why its work stays on the CPU"


def test_the_scan_finds_unplaced_factories():
    code = ("a = torch.zeros(3)\n"
            "b = torch.zeros(3, device=d)\n"
            "c = torch.randn(2).to(d)\n"
            "g = torch.Generator()  # cpu: draws identical on every device\n"
            "e = torch.eye(\n  4)\n"
            "f = torch.zeros_like(b)\n"
            "kw = {'dtype': t, 'device': d}\n"
            "h = torch.randn(2, **kw)\n"
            "other = {'dtype': t}\n"
            "i = torch.randn(2, **other)\n")
    assert violations(code) == ["line 1: torch.zeros(...)", "line 5: torch.eye(...)",
                                "line 11: torch.randn(...)"]
