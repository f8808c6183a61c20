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
from sphinx import addnodes
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


KIND_WORDS = {"paper": "paper claims reproduced", "derived": "derived",
              "not-reproduced": "not reproduced", "sanity": "sanity checks"}


def _kind_counts(records: list) -> str:
    """'2 paper claims reproduced, 1 derived, 1 not reproduced, 3 sanity checks'."""
    from helpers.core.ledger import counts

    n = counts(records)
    return ", ".join(f"{n[k]} {KIND_WORDS[k]}" for k in KIND_WORDS if n[k])


def _status_text(records: list) -> str:
    if not records:
        return "no claims recorded"
    failed = sum(not r.passed for r in records)
    verdict = "all as expected" if not failed else f"{failed} FAIL"
    return f"{_kind_counts(records)}; {verdict}"


def _seed_sweep(app) -> dict:
    """The published seed sweep (``book/seeds.json``), or ``{}``."""
    import json

    path = Path(app.confdir) / "book" / "seeds.json"
    return json.loads(path.read_text()).get("chapters", {}) if path.is_file() else {}


def _seed_text(app, chapter: str) -> str | None:
    """'paper claims hold in 10 of 10 seeds' for a chapter of the published sweep."""
    from helpers.seeds import chapter_line

    entry = _seed_sweep(app).get(chapter)
    return chapter_line(entry) if entry else None


def _bib_text(app) -> str:
    return "\n".join((Path(app.confdir) / f).read_text() for f in app.config.bibtex_bibfiles)


def _authors_year(app, key: str) -> str:
    """'Soudry et al. 2018' for a key of the book's bibliography (the key itself if absent)."""
    text = _bib_text(app)
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
    papers = list(dict.fromkeys(r.paper for r in records
                                if r.kind in ("paper", "not-reproduced")))
    if papers:
        item("Paper" + ("s" if len(papers) > 1 else ""), _link(
            app, docname, "book/bibliography",
            "; ".join(_authors_year(app, k) for k in papers)))
    others = [k for k in dict.fromkeys(r.paper for r in records if r.kind == "derived")
              if k not in papers]
    if others:
        item("Derived and classical results", _link(
            app, docname, "book/bibliography",
            "; ".join(_authors_year(app, k) for k in others)))
    status = _status_text(records)
    if records:
        status += f" (mode {records[0].mode}, seed {records[0].seed})"
    item("Claim checks", _link(app, docname, "book/claims_ledger", status))
    seeds = _seed_text(app, chapter_name(docname))
    item("Across seeds", _link(app, docname, "book/reproducibility",
                               seeds or "not yet swept over seeds"))
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
        for i, (shown, anchor) in enumerate(used):
            if i:
                links.append(nodes.Text(", "))
            links.append(nodes.reference("", "", nodes.literal("", shown),
                                         refuri=f"{api}#{anchor}", internal=True))
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


def _api_anchor(qualified: str) -> str | None:
    """The API page's anchor of ``helpers.name`` or ``<topic>.name`` (None if not public).

    Objects are documented where they are defined: ``helpers.digits`` is
    ``helpers.engine.data.digits``, ``resnet_rnn.rnn_unroll`` is
    ``helpers.topics.resnet_rnn.rnn_unroll``.
    """
    import importlib

    import helpers

    head, _, name = qualified.partition(".")
    if name.startswith("_") or not name:
        return None
    if head == "helpers":
        if name not in helpers.__all__:
            return None
        obj = getattr(helpers, name)
    else:
        try:
            module = importlib.import_module(f"helpers.topics.{head}")
        except ImportError:
            return None
        obj = getattr(module, name, None)
        if obj is None:
            return None
    owner = getattr(obj, "__module__", None)
    if not owner or not owner.startswith("helpers."):
        owner = "helpers.core.ledger" if name == "KINDS" else "helpers.core.plotting"
    return f"{owner}.{name}"


def _helpers_used(app, docname: str) -> list[tuple[str, str]]:
    """(name as written, API anchor) of every public helper the chapter's code calls
    (``helpers.name`` and ``<topic>.name``), in order of first use."""
    source = Path(app.env.doc2path(docname)).read_text()
    topic = Path(docname).name
    names = re.findall(rf"\b((?:helpers|{topic})\.[A-Za-z_]\w*)", source)
    used = []
    for name in dict.fromkeys(names):
        anchor = _api_anchor(name)
        if anchor:
            used.append((name, anchor))
    return used


def _link_helper_literals(app, doctree, docname) -> None:
    """Prose that names ``helpers.something`` or ``<topic>.something`` links to the API page."""
    if docname == "book/api":
        return
    api = app.builder.get_relative_uri(docname, "book/api")
    topic = Path(docname).name
    for lit in list(doctree.findall(nodes.literal)):
        m = re.fullmatch(rf"((?:helpers|{topic})\.[A-Za-z_]\w*)(\(.*\))?", lit.astext())
        anchor = _api_anchor(m.group(1)) if m else None
        if anchor and not isinstance(lit.parent, nodes.reference):
            ref = nodes.reference("", "", refuri=f"{api}#{anchor}", internal=True)
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
            text = _status_text(_records(chapter_name(doc)))
            seeds = _seed_text(app, chapter_name(doc))
            para += nodes.Text(" — " + text + (f"; {seeds}" if seeds else ""))
            items.append(nodes.list_item("", para))
        out += items
    return out


def _ledger(app, docname: str) -> nodes.Node:
    from helpers.core.ledger import KINDS, counts

    out = nodes.container()
    every: list = []
    overview = []
    sections = nodes.container()
    for _, chapters in _parts(app):
        for doc in chapters:
            records = _records(chapter_name(doc))
            if not records:
                logger.warning(f"no claims recorded for {doc}: the ledger would be partial",
                               location=docname)
            every += records
            title = app.env.titles[doc].astext() if doc in app.env.titles else doc
            n = counts(records)
            overview.append(([_link(app, docname, doc, title)],
                             [str(n[k]) for k in KINDS] + [str(sum(not r.passed
                                                                  for r in records))]))
            head = nodes.paragraph()
            head += nodes.strong("", "")
            head[0] += _link(app, docname, doc, title)
            sections += head
            claims = [r for r in records if r.kind != "sanity"]
            sanity = [r for r in records if r.kind == "sanity"]
            if claims:
                sections += _table(claims)
            if sanity:
                sections += nodes.paragraph("", "", nodes.emphasis(
                    "", "Sanity checks (identities and constructions, not claims):"))
                sections += _table(sanity)
    n = counts(every)
    failed = sum(not r.passed for r in every)
    out += nodes.paragraph("", (
        f"{len(every)} checks: {n['paper']} of the cited papers' claims reproduced, "
        f"{n['derived']} derived or classical results, {n['not-reproduced']} predictions "
        f"not reproduced at this scale, {n['sanity']} sanity checks; "
        f"{len(every) - failed} as expected, {failed} failed."))
    out += _overview_table(overview)
    out += sections
    return out


def _overview_table(rows: list) -> nodes.table:
    cols = ["chapter", "paper", "derived", "sanity", "not reproduced", "failed"]
    table = nodes.table(classes=["claims-overview"])
    group = nodes.tgroup(cols=len(cols))
    table += group
    for width in (40, 8, 8, 8, 10, 8):
        group += nodes.colspec(colwidth=width)
    head = nodes.thead()
    group += head
    head += _row(cols)
    body = nodes.tbody()
    group += body
    for link, cells in rows:
        row = nodes.row()
        row += nodes.entry("", nodes.paragraph("", "", *link))
        for text in cells:
            row += nodes.entry("", nodes.paragraph("", text))
        body += row
    return table


def _table(records: list) -> nodes.table:
    cols = ["claim", "kind", "measured", "op", "threshold", "control", "source", "status"]
    table = nodes.table(classes=["claims-ledger"])
    group = nodes.tgroup(cols=len(cols))
    table += group
    for width in (34, 8, 9, 4, 9, 16, 14, 8):
        group += nodes.colspec(colwidth=width)
    head = nodes.thead()
    group += head
    head += _row(cols)
    body = nodes.tbody()
    group += body
    for r in records:
        op = "≈" if r.op == "close" else r.op
        control = ("" if r.control_label is None
                   else f"{r.control_label}: {r.control_value:.4g}")
        body += _row([r.claim, r.kind, f"{r.measured:.4g}", op, f"{r.threshold:.4g}", control,
                      r.paper, r.status])
    return table


def _row(cells: list[str]) -> nodes.row:
    row = nodes.row()
    for text in cells:
        row += nodes.entry("", nodes.paragraph("", text))
    return row


def _placeholders(node: nodes.Element, docname: str) -> list[tuple]:
    """(parent, placeholder, page it comes from) for every placeholder under ``node``. The
    LaTeX builder resolves the whole book as one doctree under the root page's name, each page
    wrapped in a ``start_of_file`` node; it moves pages in without resetting their parents, so
    the walk goes down from the root rather than up from a placeholder."""
    found = []
    for child in node.children:
        if isinstance(child, _placeholder):
            found.append((node, child, docname))
        elif isinstance(child, nodes.Element):
            page = child["docname"] if isinstance(child, addnodes.start_of_file) else docname
            found.extend(_placeholders(child, page))
    return found


def _fill(app, doctree, docname):
    for parent, node, page in _placeholders(doctree, docname):
        kind = node["kind"]
        new = (_header(app, page, node) if kind == "header" else
               _status(app, page) if kind == "status" else _ledger(app, page))
        parent.replace(node, new)
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
    from helpers.kernel_polling import poll_kernel_in_slices

    poll_kernel_in_slices()  # the build's kernel replies are never missed under load
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
