"""Sphinx extension: pages and boxes built from the claims ledger, never typed by hand.

* ``{chapter-header}`` (at the top of every chapter, content: the claim in one sentence) becomes
  a box with the claim, the papers whose claims the chapter checks, the number of claim checks
  and their status, the quick-mode run time and an "Open in Colab" link.
* ``{chapter-status}`` (landing page) lists every chapter by part with its claim status.
* ``{claims-ledger}`` (back matter) shows every recorded claim, grouped by chapter, with links.
* Bars in docstrings (``|x|``) are escaped for the API page.
* Widget outputs, which static HTML cannot run, become a note pointing to the static figure.
* Prose that names a helper as ``helpers.name`` links to its entry on the API page, and each
  chapter header lists the helpers the chapter calls.

It also keeps the HTML clean in a browser console (see ``_dedupe_scripts``).

The directives leave placeholders that are filled when pages are written, after every chapter
has executed (or come from the execution cache), from the ledger files of this build. A chapter
in the table of contents without ledger records is a build warning, so a strict build never
shows a partial ledger. Pages holding the status or the ledger are re-read on every build.
"""

from __future__ import annotations

import re
from pathlib import Path

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

logger = logging.getLogger(__name__)
ALWAYS_FRESH = ("book/intro", "book/claims_ledger")


class _placeholder(nodes.General, nodes.Element):
    """Filled at write time (``doctree-resolved``)."""


class ChapterHeader(SphinxDirective):
    has_content = True

    def run(self):
        node = _placeholder(kind="header")
        claim = nodes.paragraph()
        self.state.nested_parse(self.content, self.content_offset, claim)
        node += claim
        return [node]


class ChapterStatus(SphinxDirective):
    def run(self):
        return [_placeholder(kind="status")]


class ClaimsLedger(SphinxDirective):
    option_spec = {"chapters": directives.unchanged}

    def run(self):
        return [_placeholder(kind="ledger")]


def chapter_name(docname: str) -> str:
    """``book/optimisation/implicit_bias`` → ``implicit-bias`` (the ledger file's name)."""
    return Path(docname).name.replace("_", "-")


def _records(chapter: str) -> list:
    """This build's claim records of one chapter (from ``helpers.core.ledger``'s folder)."""
    from helpers.core.ledger import claims_dir, load_ledger  # the book's own package

    return [r for r in load_ledger(claims_dir()) if r.chapter == chapter]


def _parts(app) -> list[tuple[str, list[str]]]:
    """(caption, chapter docnames) for every part of the toc that holds chapters."""
    import yaml

    toc = yaml.safe_load((Path(app.confdir) / "_toc.yml").read_text())
    parts = []
    for part in toc.get("parts", []):
        chapters = [c["file"] for c in part.get("chapters", []) if len(Path(c["file"]).parts) == 3]
        if chapters:
            parts.append((part.get("caption", ""), chapters))
    return parts


def _link(app, fromdoc: str, todoc: str, text: str) -> nodes.reference:
    uri = app.builder.get_relative_uri(fromdoc, todoc)
    return nodes.reference("", text, refuri=uri, internal=True)


def _status_text(records: list) -> str:
    if not records:
        return "no claims recorded"
    failed = sum(not r.passed for r in records)
    return (f"{len(records)} claim checks, all pass" if not failed
            else f"{len(records)} claim checks, {failed} FAIL")


def _authors_year(app, key: str) -> str:
    """'Soudry et al. 2018' for a key of book/references.bib (the key itself if absent)."""
    text = (Path(app.confdir) / "book" / "references.bib").read_text()
    m = re.search(r"@\w+\{" + re.escape(key) + r",(.*?)\n\}", text, re.S)
    if not m:
        return key
    body = m.group(1)
    authors = re.search(r"author\s*=\s*\{(.*?)\},", body, re.S)
    year = re.search(r"year\s*=\s*\{(\d+)\}", body)
    surnames = [a.split(",")[0].strip(" {}") for a in authors.group(1).split(" and ")] \
        if authors else [key]
    who = surnames[0] + (" et al." if len(surnames) > 2 else
                         f" & {surnames[1]}" if len(surnames) == 2 else "")
    return f"{who} {year.group(1) if year else ''}".strip()


def _header(app, docname: str, node: _placeholder) -> nodes.Node:
    records = _records(chapter_name(docname))
    box = nodes.admonition(classes=["chapter-header", "tip"])
    box += nodes.title("", "This chapter")
    items = nodes.bullet_list()

    def item(label: str, *content: nodes.Node) -> None:
        para = nodes.paragraph()
        para += nodes.strong("", label + ": ")
        for c in content:
            para += c
        items.append(nodes.list_item("", para))

    parsed = next(iter(node.findall(nodes.paragraph)), None) if node.children else None
    item("Claim", *(parsed.children if parsed is not None else []))
    papers = list(dict.fromkeys(r.paper for r in records))
    if papers:
        item("Paper" + ("s" if len(papers) > 1 else ""), _link(
            app, docname, "book/bibliography",
            "; ".join(_authors_year(app, k) for k in papers)))
    status = _status_text(records)
    if records:
        status += f" (mode {records[0].mode}, seed {records[0].seed})"
    item("Claim checks", _link(app, docname, "book/claims_ledger", status))
    from myst_nb.sphinx_ import NbMetadataCollector

    exec_data = NbMetadataCollector.get_exec_data(app.env, docname) or {}
    runtime = exec_data.get("runtime")
    if runtime:
        mode = records[0].mode if records else "quick"
        item("Run time", nodes.Text(f"{runtime:.0f} s to execute when this book was built "
                                    f"({mode} mode)"))
    used = _helpers_used(app, docname)
    if used:
        api = app.builder.get_relative_uri(docname, "book/api")
        links: list[nodes.Node] = []
        for i, name in enumerate(used):
            if i:
                links.append(nodes.Text(", "))
            links.append(nodes.reference("", "", nodes.literal("", name),
                                         refuri=f"{api}#helpers.{name}", internal=True))
        item("Helpers used", *links)
    repo = app.config.html_theme_options.get("repository_url", "").rstrip("/")
    branch = app.config.html_theme_options.get("repository_branch", "main")
    if repo.startswith("https://github.com/"):
        url = (f"https://colab.research.google.com/github/{repo.removeprefix('https://github.com/')}"
               f"/blob/{branch}/{docname}.ipynb")
        item("Run it", nodes.reference("", "Open in Colab", refuri=url))
    box += items
    if not records:
        logger.warning(f"chapter {docname} has no claim records in this build",
                       location=docname)
    return box


def _helpers_used(app, docname: str) -> list[str]:
    """Public helpers the chapter's code calls (``helpers.name``), in order of first use."""
    import helpers

    source = Path(app.env.doc2path(docname)).read_text()
    names = re.findall(r"\bhelpers\.([A-Za-z_]\w*)", source)
    return [n for n in dict.fromkeys(names) if n in helpers.__all__]


def _link_helper_literals(app, doctree, docname) -> None:
    """Prose that names ``helpers.something`` links to its entry on the API page."""
    if docname == "book/api":
        return
    import helpers

    api = app.builder.get_relative_uri(docname, "book/api")
    for lit in list(doctree.findall(nodes.literal)):
        m = re.fullmatch(r"helpers\.([A-Za-z_]\w*)(\(.*\))?", lit.astext())
        if m and m.group(1) in helpers.__all__ and not isinstance(lit.parent, nodes.reference):
            ref = nodes.reference("", "", refuri=f"{api}#helpers.{m.group(1)}", internal=True)
            lit.replace_self(ref)
            ref += lit


def _status(app, docname: str) -> nodes.Node:
    out = nodes.container()
    for caption, chapters in _parts(app):
        out += nodes.rubric("", caption)
        items = nodes.bullet_list()
        for doc in chapters:
            para = nodes.paragraph()
            para += _link(app, docname, doc, app.env.titles[doc].astext()
                          if doc in app.env.titles else doc)
            para += nodes.Text(" — " + _status_text(_records(chapter_name(doc))))
            items.append(nodes.list_item("", para))
        out += items
    return out


def _ledger(app, docname: str) -> nodes.Node:
    out = nodes.container()
    total = failed = 0
    for _, chapters in _parts(app):
        for doc in chapters:
            records = _records(chapter_name(doc))
            if not records:
                logger.warning(f"no claims recorded for {doc}: the ledger would be partial",
                               location=docname)
            total += len(records)
            failed += sum(not r.passed for r in records)
            title = app.env.titles[doc].astext() if doc in app.env.titles else doc
            head = nodes.paragraph()
            head += nodes.strong("", "")
            head[0] += _link(app, docname, doc, title)
            out += head
            out += _table(records)
    summary = nodes.paragraph("", f"{total} claims: {total - failed} pass, {failed} fail.")
    out.insert(0, summary)
    return out


def _table(records: list) -> nodes.table:
    cols = ["claim", "measured", "op", "threshold", "paper", "status"]
    table = nodes.table(classes=["claims-ledger"])
    group = nodes.tgroup(cols=len(cols))
    table += group
    for width in (40, 10, 4, 10, 16, 8):
        group += nodes.colspec(colwidth=width)
    head = nodes.thead()
    group += head
    head += _row(cols)
    body = nodes.tbody()
    group += body
    for r in records:
        op = "≈" if r.op == "close" else r.op
        body += _row([r.claim, f"{r.measured:.4g}", op, f"{r.threshold:.4g}", r.paper,
                      "pass" if r.passed else "FAIL"])
    return table


def _row(cells: list[str]) -> nodes.row:
    row = nodes.row()
    for text in cells:
        row += nodes.entry("", nodes.paragraph("", text))
    return row


def _fill(app, doctree, docname):
    for node in list(doctree.findall(_placeholder)):
        kind = node["kind"]
        new = (_header(app, docname, node) if kind == "header" else
               _status(app, docname) if kind == "status" else _ledger(app, docname))
        node.replace_self(new)
    _link_helper_literals(app, doctree, docname)
    _widget_fallbacks(doctree)


WIDGET_NOTE = ("Interactive widget: it runs in a live notebook (open this chapter in Colab with "
               "the button at the top of the page); the figure below shows it at fixed settings.")


def _widget_fallbacks(doctree) -> None:
    """Static HTML cannot run a widget: say so where the widget would be."""
    for raw in list(doctree.findall(nodes.raw)):
        if "application/vnd.jupyter.widget-view+json" in raw.astext():
            raw.replace_self(nodes.paragraph("", "", nodes.emphasis("", WIDGET_NOTE),
                                             classes=["widget-fallback"]))


def _dedupe_scripts(app, pagename, templatename, context, doctree):
    """Jupyter Book 1 registers Thebe's inline configuration twice (with different option
    strings), which redeclares ``const THEBE_JS_URL`` and throws in every browser console;
    keep only the first inline script declaring a given top-level ``const``."""
    scripts, seen = context.get("script_files", []), set()
    unique = []
    for js in scripts:
        body = (getattr(js, "attributes", {}) or {}).get("body") or ""
        declared = re.match(r"\s*const\s+(\w+)", body)
        key = ("const", declared.group(1)) if declared else (getattr(js, "filename", ""), body)
        if key not in seen:
            seen.add(key)
            unique.append(js)
    scripts[:] = unique


def _light_mode_default(app, pagename, templatename, context, doctree):
    # The theme's template reads ``default_mode``; left empty, a first visit logs
    # "Got invalid theme mode" as a console error.
    if not context.get("default_mode"):
        context["default_mode"] = "light"


def _escape_bars(app, what, name, obj, options, lines) -> None:
    """Docstrings state math such as ``|w_i| ≤ 1``; reStructuredText would read ``|...|`` as a
    substitution. Escape bars outside inline literals so the API page shows them as written."""
    for i, line in enumerate(lines):
        parts = line.split("``")
        for j in range(0, len(parts), 2):
            parts[j] = re.sub(r"(?<!\\)\|", r"\\|", parts[j])
        lines[i] = "``".join(parts)


def _always_outdated(app, env, added, changed, removed):
    return [doc for doc in ALWAYS_FRESH if doc in env.found_docs]


def setup(app):
    app.add_node(_placeholder)
    app.add_directive("chapter-header", ChapterHeader)
    app.add_directive("chapter-status", ChapterStatus)
    app.add_directive("claims-ledger", ClaimsLedger)
    app.connect("doctree-resolved", _fill)
    app.connect("env-get-outdated", _always_outdated)
    app.connect("html-page-context", _dedupe_scripts)
    app.connect("html-page-context", _light_mode_default)
    app.connect("autodoc-process-docstring", _escape_bars)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
