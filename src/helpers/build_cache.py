"""Keep the book's execution cache honest, chapter by chapter.

Jupyter Book's cache hashes only a notebook's code cells, so a change in the ``helpers``
package, the pinned requirements or the book's settings would leave stale outputs. Each
chapter's **key** hashes exactly what its outputs depend on besides its own code:

* ``helpers.core`` and ``helpers.engine`` (every chapter uses them) and the package's
  ``__init__`` files,
* the chapter's own topic (``helpers/topics/<chapter>.py`` or the package of that name),
* ``requirements.txt`` and ``BOOK_MODE`` / ``BOOK_SEED`` / ``BOOK_DEVICE``.

``python -m helpers.build_cache BUILD_DIR CLAIMS_DIR`` compares every chapter's key with the one
stored in ``BUILD_DIR/.execution-keys.json``; for each chapter whose key changed it deletes the
chapter's cached execution and its claims-ledger file and marks its source as changed, so the
next build re-executes that chapter, and only that one (a change to core or engine re-executes
all). ``--record`` stores the current keys without deleting anything: ``make test`` runs it
after executing every chapter into the shared cache, so that ``make book`` right after finds
nothing to execute.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

from helpers.core.config import read_device, read_mode, read_seed

PACKAGE_DIR = Path(__file__).resolve().parent
KEYS_FILE = ".execution-keys.json"


def _digest_files(digest, files) -> None:
    for path in sorted(files):
        if path.is_file():
            digest.update(str(path.relative_to(PACKAGE_DIR.parent)).encode())
            digest.update(path.read_bytes())


def shared_files() -> list[Path]:
    """The package files every chapter depends on: core, engine and the ``__init__`` files."""
    return [*PACKAGE_DIR.joinpath("core").rglob("*.py"),
            *PACKAGE_DIR.joinpath("engine").rglob("*.py"),
            PACKAGE_DIR / "__init__.py", PACKAGE_DIR / "topics" / "__init__.py"]


def topic_files(chapter: str) -> list[Path]:
    """The topic module (or package) named after the chapter's file, if there is one."""
    single = PACKAGE_DIR / "topics" / f"{chapter}.py"
    folder = PACKAGE_DIR / "topics" / chapter
    return [single] if single.is_file() else sorted(folder.rglob("*.py"))


def execution_key(root: Path, chapter: str | None = None) -> str:
    """SHA-256 over what a chapter's outputs depend on besides its code (see the module doc).

    Without ``chapter``: over the whole package (every chapter at once).
    """
    digest = hashlib.sha256()
    files = (PACKAGE_DIR.rglob("*.py") if chapter is None
             else [*shared_files(), *topic_files(chapter)])
    _digest_files(digest, files)
    requirements = root / "requirements.txt"
    if requirements.is_file():
        digest.update(requirements.read_bytes())
    digest.update(f"{read_mode()}|{read_seed()}|{read_device()}".encode())
    return digest.hexdigest()


def chapter_sources(root: Path) -> list[Path]:
    """Every chapter's MyST source: ``book/<part>/<chapter>.md``."""
    return sorted(root.glob("book/*/*.md"))


def current_keys(root: Path) -> dict[str, str]:
    """``book/<part>/<chapter>.md`` → its key, for every chapter."""
    return {str(md.relative_to(root)): execution_key(root, md.stem)
            for md in chapter_sources(root)}


def _drop_cached_execution(cache_dir: Path, source: Path) -> None:
    """Delete the cached executions of ``source`` (records whose URI is that file)."""
    if not cache_dir.is_dir():
        return
    from jupyter_cache import get_cache

    cache = get_cache(str(cache_dir))
    for record in cache.list_cache_records():
        if Path(record.uri).resolve() == source.resolve():
            cache.remove_cache(record.pk)


def refresh(build_dir: Path, root: Path, claims: Path | None) -> list[str]:
    """Invalidate every chapter whose key changed; return their sources (relative paths).

    For each, the source's modification time is set to now, so that Sphinx reads (and renders)
    it again; with ``claims`` given, its cached execution and its ledger file are deleted too,
    so that it re-executes. Then the current keys are stored.
    """
    keys_path = build_dir / KEYS_FILE
    stored = json.loads(keys_path.read_text()) if keys_path.is_file() else {}
    keys = current_keys(root)
    stale = [src for src, key in keys.items() if stored.get(src) != key]
    for src in stale:
        source = root / src
        if claims is not None:
            _drop_cached_execution(build_dir / ".jupyter_cache", source)
            (claims / f"{source.stem.replace('_', '-')}.json").unlink(missing_ok=True)
        os.utime(source)
    build_dir.mkdir(parents=True, exist_ok=True)
    keys_path.write_text(json.dumps(keys, indent=1) + "\n")
    return stale


def record(build_dir: Path, root: Path) -> list[str]:
    """Store every chapter's current key after the chapters were executed afresh into the
    cache (nothing is deleted); chapters whose key changed are marked for re-rendering."""
    return refresh(build_dir, root, None)


def main(argv: list[str]) -> int:
    """``python -m helpers.build_cache [--record] BUILD_DIR [CLAIMS_DIR]``."""
    if argv[:1] == ["--record"] and len(argv) == 2:
        record(Path(argv[1]), Path.cwd())
        return 0
    if len(argv) != 2:
        print("usage: python -m helpers.build_cache BUILD_DIR CLAIMS_DIR\n"
              "       python -m helpers.build_cache --record BUILD_DIR", file=sys.stderr)
        return 2
    build_dir, claims = Path(argv[0]), Path(argv[1])
    stale = refresh(build_dir, Path.cwd(), claims)
    if stale:
        print(f"{len(stale)} chapter(s) will re-execute (helpers, requirements or settings "
              f"changed): {', '.join(Path(s).stem for s in stale)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
