"""Keep the book's execution cache honest.

Jupyter Book's cache hashes only a notebook's code cells, so a change in the ``helpers``
package, the pinned requirements or the book's settings would leave stale outputs. Before each
build, ``python -m helpers.build_cache BUILD_DIR`` computes a key over those inputs and, when it
differs from the one stored with the cache, deletes the cache and the claims ledger so every
chapter re-executes.
"""

from __future__ import annotations

import hashlib
import shutil
import sys
from pathlib import Path

from helpers.core.config import read_device, read_mode, read_seed

PACKAGE_DIR = Path(__file__).resolve().parent


def execution_key(root: Path) -> str:
    """SHA-256 over the helpers sources, requirements.txt and BOOK_MODE/SEED/DEVICE."""
    digest = hashlib.sha256()
    files = sorted(PACKAGE_DIR.rglob("*.py")) + [root / "requirements.txt"]
    for path in files:
        if path.is_file():
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    digest.update(f"{read_mode()}|{read_seed()}|{read_device()}".encode())
    return digest.hexdigest()


def refresh(build_dir: Path, root: Path, claims: Path) -> bool:
    """Delete ``build_dir``'s execution cache, doctrees and ``claims`` if the key changed.

    Returns True when it deleted them.
    """
    key_file = build_dir / ".execution-key"
    key = execution_key(root)
    if key_file.is_file() and key_file.read_text().strip() == key:
        return False
    # Sphinx's own environment also remembers which pages are up to date: drop it with the
    # execution cache, or unchanged pages would be neither re-read nor re-executed.
    for stale in (".jupyter_cache", ".doctrees", "jupyter_execute"):
        shutil.rmtree(build_dir / stale, ignore_errors=True)
    shutil.rmtree(claims, ignore_errors=True)
    build_dir.mkdir(parents=True, exist_ok=True)
    key_file.write_text(key + "\n")
    return True


def main(argv: list[str]) -> int:
    """``python -m helpers.build_cache BUILD_DIR CLAIMS_DIR``."""
    if len(argv) != 2:
        print("usage: python -m helpers.build_cache BUILD_DIR CLAIMS_DIR", file=sys.stderr)
        return 2
    build_dir, claims = Path(argv[0]), Path(argv[1])
    if refresh(build_dir, Path.cwd(), claims):
        print(f"execution cache in {build_dir} reset: helpers, requirements or settings changed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
