"""Sphinx extension: pages built from files that chapters write are re-read on every build.

The claims-ledger page executes (``execution_mode: force``) and tabulates the claim records
that the chapters write while they execute, so it must run after all of them, and again
whenever any of them ran. The performance page shows the published benchmark file. Sphinx reads
documents in name order and skips unchanged ones; this marks both pages outdated on every build
and moves the ledger to the end of the reading order.
"""

LEDGER_DOC = "book/claims_ledger"
ALWAYS_FRESH = (LEDGER_DOC, "book/performance")


def _always_outdated(app, env, added, changed, removed):
    return [doc for doc in ALWAYS_FRESH if doc in env.found_docs]


def _read_last(app, env, docnames):
    if LEDGER_DOC in docnames:
        docnames.remove(LEDGER_DOC)
        docnames.append(LEDGER_DOC)


def setup(app):
    app.connect("env-get-outdated", _always_outdated)
    app.connect("env-before-read-docs", _read_last)
    return {"parallel_read_safe": False, "parallel_write_safe": True}
