"""Sphinx extension: the claims-ledger page is always re-read, and read after every chapter.

The ledger page executes (``execution_mode: force``) and tabulates the claim records that the
chapters write while they execute, so it must run after all of them, and again whenever any of
them ran. Sphinx reads documents in name order and skips unchanged ones; this reorders the list
and marks the ledger outdated on every build.
"""

LEDGER_DOC = "book/claims_ledger"


def _always_outdated(app, env, added, changed, removed):
    return [LEDGER_DOC] if LEDGER_DOC in env.found_docs else []


def _read_last(app, env, docnames):
    if LEDGER_DOC in docnames:
        docnames.remove(LEDGER_DOC)
        docnames.append(LEDGER_DOC)


def setup(app):
    app.connect("env-get-outdated", _always_outdated)
    app.connect("env-before-read-docs", _read_last)
    return {"parallel_read_safe": False, "parallel_write_safe": True}
