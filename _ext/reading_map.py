"""The reading map: which chapter builds on which, from ``book/reading_map.yml``.

* ``{reading-map}`` (landing page) draws the chapters as a graph, one column per part, with an
  arrow from each chapter to every chapter that builds on it. In HTML it is an inline SVG whose
  nodes link to their chapters; other builders (LaTeX, text) get the same data as a list.
* :func:`code_edges` finds the links that the code itself makes: a chapter that calls an engine
  module introduced by another chapter builds on that chapter. ``tests/test_reading_map.py``
  checks that the file lists every one of them, and that each chapter's "Builds on" line and
  "Where next" section link exactly to the chapters the file names.

The data functions need only the standard library and PyYAML; the tests use them directly.
"""

from __future__ import annotations

import ast
import re
from html import escape
from pathlib import Path

import yaml
from docutils import nodes
from sphinx.util.docutils import SphinxDirective

MAP_FILE = "book/reading_map.yml"


def load(root: Path) -> dict:
    """The reading map's data (``book/reading_map.yml``)."""
    return yaml.safe_load((Path(root) / MAP_FILE).read_text())


def parts(root: Path) -> list[tuple[str, list[str]]]:
    """(caption, chapter docnames) for every part of ``_toc.yml`` that holds chapters."""
    toc = yaml.safe_load((Path(root) / "_toc.yml").read_text())
    out = []
    for part in toc.get("parts", []):
        docs = [c["file"] for c in part.get("chapters", []) if len(Path(c["file"]).parts) == 3]
        if docs:
            out.append((part.get("caption", ""), docs))
    return out


def toc_docs(root: Path) -> list[str]:
    """Every page of the table of contents, in order."""
    toc = yaml.safe_load((Path(root) / "_toc.yml").read_text())
    return [c["file"] for part in toc.get("parts", []) for c in part.get("chapters", [])]


def docname_of(root: Path) -> dict[str, str]:
    """File stem → docname for every page of the table of contents."""
    return {Path(d).name: d for d in toc_docs(root)}


def edges(data: dict) -> list[tuple[str, str, str, str]]:
    """(earlier, later, why, then) for every builds-on link of the map."""
    return [(src, dst, e["why"], e["then"])
            for dst, entry in data["chapters"].items()
            for src, e in (entry.get("builds_on") or {}).items()]


def where_next(data: dict, stem: str) -> list[tuple[str, str]]:
    """(stem, reason) of the pages a chapter's "Where next" links to: the chapters that build
    on it, then its extra ``next`` links."""
    later = [(dst, then) for src, dst, _, then in edges(data) if src == stem]
    return later + list((data["chapters"][stem].get("next") or {}).items())


def _engine_owners(root: Path) -> dict[str, str]:
    """Engine module → stem of the chapter its docstring says introduces it."""
    titles = {}
    for _, docs in parts(root):
        for doc in docs:
            first = re.search(r"^# (.+)$", (Path(root) / f"{doc}.md").read_text(), re.M)
            if first:
                titles[" ".join(first.group(1).split())] = Path(doc).name
    owners = {}
    for path in sorted((Path(root) / "src/helpers/engine").glob("*.py")):
        doc = " ".join((ast.get_docstring(ast.parse(path.read_text())) or "").split())
        m = re.search(r'Introduced in the chapter "([^"]+)"', doc)
        if m and m.group(1) in titles:
            owners[path.stem] = titles[m.group(1)]
    return owners


def _engine_names(root: Path) -> dict[str, str]:
    """Public top-level name → the engine module defining it."""
    names = {}
    for path in sorted((Path(root) / "src/helpers/engine").glob("*.py")):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.name.startswith("_"):
                names[node.name] = path.stem
    return names


def engine_use(root: Path, doc: str) -> set[str]:
    """Engine modules a chapter uses: ``helpers.name`` calls in its text, and imports of
    ``helpers.engine.<module>`` in its topic module (or package)."""
    root = Path(root)
    names = _engine_names(root)
    used = {names[n] for n in re.findall(r"\bhelpers\.(\w+)", (root / f"{doc}.md").read_text())
            if n in names}
    topic = root / "src/helpers/topics" / Path(doc).name
    files = sorted(topic.glob("*.py")) if topic.is_dir() else [topic.with_suffix(".py")]
    for f in files:
        if f.is_file():
            used |= set(re.findall(r"helpers\.engine\.(\w+)", f.read_text()))
    return used


def code_edges(root: Path, modules) -> set[tuple[str, str, str]]:
    """(introducing chapter, using chapter, engine module) for every chapter that calls one of
    ``modules`` introduced in another chapter."""
    owners = _engine_owners(root)
    found = set()
    for _, docs in parts(root):
        for doc in docs:
            for mod in engine_use(root, doc) & set(modules):
                owner = owners.get(mod)
                if owner and owner != Path(doc).name:
                    found.add((owner, Path(doc).name, mod))
    return found


# Layout of the drawing, in SVG user units.
W, H, GAP_X, GAP_Y, TOP, PAD = 176, 30, 54, 16, 46, 10


def layout(root: Path) -> tuple[dict, list, float, float]:
    """Node boxes (stem → (x, y, number, docname)), part captions (x, caption) and the size."""
    boxes, captions, number, tallest = {}, [], 0, 0
    for col, (caption, docs) in enumerate(parts(root)):
        x = PAD + col * (W + GAP_X)
        captions.append((x, caption))
        for row, doc in enumerate(docs):
            number += 1
            boxes[Path(doc).name] = (x, TOP + row * (H + GAP_Y), number, doc)
        tallest = max(tallest, len(docs))
    width = PAD * 2 + len(captions) * W + (len(captions) - 1) * GAP_X
    return boxes, captions, width, TOP + tallest * (H + GAP_Y) + 30


def _arrow(x0, y0, x1, y1, c0, c1, style: str) -> str:
    """A cubic Bézier from (x0, y0) to (x1, y1) with an arrowhead drawn as a polygon (plain
    SVG, no markers, so that simple renderers draw it too)."""
    dx, dy = x1 - c1[0], y1 - c1[1]
    n = max((dx * dx + dy * dy) ** 0.5, 1e-9)
    ux, uy = dx / n, dy / n
    a, b = (x1 - 7 * ux + 3.5 * uy, y1 - 7 * uy - 3.5 * ux), (x1 - 7 * ux - 3.5 * uy,
                                                              y1 - 7 * uy + 3.5 * ux)
    return (f'<path d="M{x0:.1f},{y0:.1f} C{c0[0]:.1f},{c0[1]:.1f} {c1[0]:.1f},{c1[1]:.1f} '
            f'{x1:.1f},{y1:.1f}" fill="none" {style}/>'
            f'<polygon points="{x1:.1f},{y1:.1f} {a[0]:.1f},{a[1]:.1f} {b[0]:.1f},{b[1]:.1f}" '
            f'fill="{_colour(style)}"/>')


def _colour(style: str) -> str:
    return re.search(r'stroke="([^"]+)"', style).group(1)


CODE_STYLE = 'stroke="#1f4e79" stroke-width="1.6"'
THEORY_STYLE = 'stroke="#8c8c8c" stroke-width="1.2" stroke-dasharray="4 3"'


def svg(root: Path, href=None) -> str:
    """The map as an SVG document; ``href(docname)`` gives each node's link (none if None)."""
    data = load(root)
    boxes, captions, width, height = layout(root)
    code = {(s, d) for s, d, _ in code_edges(root, data.get("code_modules", []))}
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width:.0f} {height:.0f}" '
           f'width="{width:.0f}" height="{height:.0f}" font-family="sans-serif" '
           f'class="reading-map" role="img" aria-label="Reading map of the chapters">',
           f'<rect x="0" y="0" width="{width:.0f}" height="{height:.0f}" fill="white"/>']
    for x, caption in captions:
        head, _, rest = caption.partition(": ")
        out.append(f'<text x="{x + W / 2:.1f}" y="16" font-size="12" font-weight="bold" '
                   f'text-anchor="middle">{escape(head)}</text>')
        out.append(f'<text x="{x + W / 2:.1f}" y="31" font-size="9" text-anchor="middle" '
                   f'fill="#444">{escape(rest[:44] + ("…" if len(rest) > 44 else ""))}</text>')
    for src, dst, _, _ in edges(data):
        (sx, sy, _, _), (tx, ty, _, _) = boxes[src], boxes[dst]
        style = CODE_STYLE if (src, dst) in code else THEORY_STYLE
        if sx == tx:  # same part: a bow on the right-hand side
            bow = 18 + 6 * abs(ty - sy) / (H + GAP_Y)
            x0, y0, x1, y1 = sx + W, sy + H / 2 + 4, tx + W, ty + H / 2 - 4
            out.append(_arrow(x0, y0, x1, y1, (x0 + bow, y0), (x1 + bow, y1), style))
        else:
            x0, y0, x1, y1 = sx + W, sy + H / 2, tx, ty + H / 2
            mid = (x1 - x0) / 2
            out.append(_arrow(x0, y0, x1, y1, (x0 + mid, y0), (x1 - mid, y1), style))
    for stem, (x, y, number, doc) in boxes.items():
        label = f"{number}. {data['chapters'][stem]['short']}"
        box = (f'<rect x="{x}" y="{y:.1f}" width="{W}" height="{H}" rx="6" fill="#eef4fb" '
               f'stroke="#1f4e79" stroke-width="1"/>'
               f'<text x="{x + 8}" y="{y + H / 2 + 4:.1f}" font-size="12" fill="#111">'
               f'{escape(label)}</text>')
        title = f"<title>{escape(doc)}</title>"
        if href is not None:
            out.append(f'<a href="{escape(href(doc))}">{title}{box}</a>')
        else:
            out.append(box)
    y = height - 12
    out.append(_arrow(PAD, y - 4, PAD + 36, y - 4, (PAD + 12, y - 4), (PAD + 24, y - 4),
                      CODE_STYLE))
    out.append(f'<text x="{PAD + 42}" y="{y:.1f}" font-size="10">builds on code introduced '
               f'there</text>')
    out.append(_arrow(PAD + 230, y - 4, PAD + 266, y - 4, (PAD + 242, y - 4),
                      (PAD + 254, y - 4), THEORY_STYLE))
    out.append(f'<text x="{PAD + 272}" y="{y:.1f}" font-size="10">builds on a result or '
               f'question of the earlier chapter</text>')
    out.append("</svg>")
    return "\n".join(out)


# Sphinx: the {reading-map} directive.

class reading_map_node(nodes.General, nodes.Element):
    """Filled when the page is written: SVG in HTML, a list of links elsewhere."""


class ReadingMap(SphinxDirective):
    def run(self):
        self.env.note_dependency(str(Path(self.env.app.confdir) / MAP_FILE))
        return [reading_map_node()]


def _fill(app, doctree, docname):
    for node in list(doctree.findall(reading_map_node)):
        root = Path(app.confdir)
        if app.builder.format == "html":
            drawing = svg(root, lambda doc: app.builder.get_relative_uri(docname, doc))
            node.replace_self(nodes.raw("", f'<div class="reading-map">{drawing}</div>',
                                        format="html"))
        else:
            node.replace_self(_as_list(app, root, docname))


def _as_list(app, root: Path, docname: str) -> nodes.bullet_list:
    """Non-HTML builders: every chapter with the chapters it builds on, as links."""
    data, items = load(root), nodes.bullet_list()
    for _, docs in parts(root):
        for doc in docs:
            para = nodes.paragraph()
            para += _ref(app, docname, doc)
            earlier = list(data["chapters"][Path(doc).name].get("builds_on") or {})
            para += nodes.Text(" builds on " if earlier else ": the first chapter of its line")
            for i, stem in enumerate(earlier):
                if i:
                    para += nodes.Text(", ")
                para += _ref(app, docname, docname_of(root)[stem])
            items += nodes.list_item("", para)
    return items


def _ref(app, fromdoc: str, todoc: str) -> nodes.reference:
    title = app.env.titles[todoc].astext() if todoc in app.env.titles else todoc
    return nodes.reference("", title, refuri=app.builder.get_relative_uri(fromdoc, todoc),
                           internal=True)


def setup(app):
    app.add_node(reading_map_node)
    app.add_directive("reading-map", ReadingMap)
    app.connect("doctree-resolved", _fill)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
