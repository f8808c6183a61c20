"""``python -m helpers.seeds``: how robust is each claim? Run chapters under seeds nobody chose.

Every chapter executes in quick mode, in a fresh kernel, once per seed ``start, start + 1, …``
(default from 1000: seeds no chapter was written with). Each run writes its own claims ledger;
the sweep then reports, per claim (matched across seeds by chapter and claim text):

* the pass rate (a claim that a seed never reached, because the notebook stopped earlier,
  counts as not passed),
* min / median / max of the measured value,
* the smallest margin: the signed distance to the gate in units of the check's ``scale`` (one
  unit of the threshold's justification, e.g. one standard error), else of ``|threshold|``.

Usage::

    python -m helpers.seeds --seeds 10 [--start 1000] [--chapter NAME ...] [--jobs 2]
                            [--publish]

``--publish`` merges the chapters swept into ``book/seeds.json`` (other chapters' entries are
kept), which the book's *Reproducibility* page and every chapter header show. Each task (one
chapter under one seed) is a separate process with one CPU thread; ``--jobs`` run at once.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from helpers.core.ledger import ClaimRecord, find_root, load_ledger

DEFAULT_START = 1000


def chapter_notebooks(root: Path) -> dict[str, Path]:
    """Ledger name → notebook for every chapter in ``_toc.yml`` (parts with chapters only)."""
    import yaml

    toc = yaml.safe_load((root / "_toc.yml").read_text())
    found = {}
    for part in toc.get("parts", []):
        for entry in part.get("chapters", []):
            path = root / (entry["file"] + ".ipynb")
            if path.parent != root / "book" and path.is_file():
                found[path.stem.replace("_", "-")] = path
    return found


def select(chapters: dict[str, Path], names: list[str] | None) -> dict[str, Path]:
    """The chapters named (file stem ``resnet_rnn`` or ledger name ``resnet-rnn``); all if None."""
    if not names:
        return chapters
    chosen = {}
    for name in names:
        key = name.replace("_", "-")
        if key not in chapters:
            raise ValueError(f"chapter must be one of {sorted(chapters)}, got {name!r}")
        chosen[key] = chapters[key]
    return chosen


def run_notebook(notebook: Path, seed: int, claims: Path, timeout: int = 900, *,
                 mode: str = "quick", device: str | None = None,
                 extra_env: dict[str, str] | None = None) -> dict:
    """Execute ``notebook`` in a fresh kernel with ``BOOK_SEED=seed`` (one CPU thread).

    Returns ``{"seconds", "error"}``; its claim records are in ``claims``.
    """
    env = dict(os.environ, BOOK_SEED=str(seed), BOOK_MODE=mode, BOOK_CLAIMS_DIR=str(claims),
               BOOK_PROGRESS="0", OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE",
               **(extra_env or {}))
    if device is not None:
        env["BOOK_DEVICE"] = device
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "helpers.seeds", "--execute", str(notebook),
         "--timeout", str(timeout)],
        env=env, capture_output=True, text=True, cwd=notebook.parent)
    error = None
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]
        error = lines[-1][:300] if lines else f"exit code {proc.returncode}"
    return {"seconds": round(time.perf_counter() - start, 1), "error": error}


def _execute(notebook: Path, timeout: int) -> int:
    """Run one notebook with nbclient (used in the child process)."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.read(notebook, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(notebook.parent)}})
    try:
        client.execute()
    except CellExecutionError as err:
        last = [ln for ln in str(err).splitlines() if ln.strip()]
        print(last[-1] if last else "cell failed")
        return 1
    return 0


def summarise(runs: dict[int, list[ClaimRecord]], errors: dict[int, str | None]) -> list[dict]:
    """Per claim (in the order of first appearance): pass rate, value range, smallest margin."""
    seeds = sorted(runs)
    order: list[str] = []
    by_claim: dict[str, dict[int, ClaimRecord]] = {}
    for seed in seeds:
        for record in runs[seed]:
            if record.claim not in by_claim:
                order.append(record.claim)
                by_claim[record.claim] = {}
            by_claim[record.claim][seed] = record
    rows = []
    for claim in order:
        got = by_claim[claim]
        first = next(iter(got.values()))
        values = [r.measured for r in got.values() if not math.isnan(r.measured)]
        margins = [r.margin for r in got.values() if r.margin is not None
                   and not math.isnan(r.margin)]
        if first.kind == "not-reproduced":  # the margin of the prediction's failure
            margins = [-m for m in margins]
        failed = sorted(s for s in seeds if s not in got or not got[s].passed)
        rows.append({
            "claim": claim, "kind": first.kind, "paper": first.paper, "op": first.op,
            "threshold": first.threshold, "note": first.note,
            "control": first.control_label, "seeds": len(seeds),
            "passed": len(seeds) - len(failed), "failed_seeds": failed,
            "missing_seeds": sorted(s for s in seeds if s not in got),
            "min": min(values) if values else None,
            "median": statistics.median(values) if values else None,
            "max": max(values) if values else None,
            "min_margin": min(margins) if margins else None,
            "scaled": first.scale is not None,
        })
    return rows


def sweep(chapters: dict[str, Path], seeds: list[int], jobs: int, timeout: int) -> dict:
    """Run every (chapter, seed) task, ``jobs`` at a time; the summary per chapter."""
    from helpers.core.progress import progress

    tasks = [(name, path, seed) for name, path in chapters.items() for seed in seeds]
    with tempfile.TemporaryDirectory(prefix="book-seeds-") as tmp:
        def task(item):
            name, path, seed = item
            folder = Path(tmp) / f"{name}-{seed}"
            folder.mkdir()
            outcome = run_notebook(path, seed, folder, timeout)
            return name, seed, outcome, load_ledger(folder)

        results = {}
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            for name, seed, outcome, records in progress(pool.map(task, tasks), total=len(tasks),
                                                         desc="chapter × seed"):
                results.setdefault(name, {})[seed] = (outcome, records)
                status = "ok" if outcome["error"] is None else outcome["error"]
                print(f"{name} seed {seed}: {outcome['seconds']:.0f} s, {status}", flush=True)
    report = {}
    for name, per_seed in results.items():
        runs = {s: recs for s, (_, recs) in per_seed.items()}
        errors = {s: out["error"] for s, (out, _) in per_seed.items()}
        seconds = [out["seconds"] for out, _ in per_seed.values()]
        report[name] = {
            "seeds": sorted(per_seed), "errors": {str(s): e for s, e in errors.items() if e},
            "seconds_median": statistics.median(seconds), "claims": summarise(runs, errors),
        }
    return report


def chapter_line(entry: dict) -> str:
    """"paper claims hold in 10 of 10 seeds", from one chapter's sweep entry."""
    n = len(entry["seeds"])
    paper = [c for c in entry["claims"] if c["kind"] == "paper"]
    if not paper:
        return f"no paper claims; all checks as expected in {_all_ok(entry)} of {n} seeds"
    ok = sum(all(s not in c["failed_seeds"] for c in paper) for s in entry["seeds"])
    return f"paper claims hold in {ok} of {n} seeds"


def _all_ok(entry: dict) -> int:
    return sum(all(s not in c["failed_seeds"] for c in entry["claims"]) for s in entry["seeds"])


def format_report(report: dict) -> str:
    """One line per claim: chapter, kind, pass rate, min / median / max, smallest margin."""
    lines = []
    for name, entry in report.items():
        lines.append(f"{name}: {chapter_line(entry)} (median {entry['seconds_median']:.0f} s)")
        for row in entry["claims"]:
            rng = ("—" if row["min"] is None else
                   f"{row['min']:.4g} / {row['median']:.4g} / {row['max']:.4g}")
            margin = "—" if row["min_margin"] is None else f"{row['min_margin']:+.3g}"
            lines.append(f"  {row['passed']:>2}/{row['seeds']:<2} [{row['kind']}] "
                         f"{row['claim']}: {rng}; min margin {margin}")
        for seed, err in entry["errors"].items():
            lines.append(f"  seed {seed} stopped: {err}")
    return "\n".join(lines)


def publish(report: dict, path: Path, meta: dict) -> None:
    """Merge ``report`` into the published sweep at ``path`` (other chapters are kept).

    Sweeps of different chapters may publish at the same time: a lock file serialises them.
    """
    import fcntl

    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        published = json.loads(path.read_text()) if path.is_file() else {"chapters": {}}
        published["chapters"].update(report)
        published["chapters"] = dict(sorted(published["chapters"].items()))
        published.setdefault("runs", []).append(meta)
        path.write_text(json.dumps(published, indent=1) + "\n")
    path.with_suffix(".lock").unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers.seeds", description=__doc__.split(
        "\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=10, help="how many seeds (default 10)")
    parser.add_argument("--start", type=int, default=DEFAULT_START,
                        help=f"first seed (default {DEFAULT_START})")
    parser.add_argument("--chapter", action="append", help="a chapter to sweep (repeatable)")
    parser.add_argument("--jobs", type=int, default=2, help="tasks at once (default 2)")
    parser.add_argument("--timeout", type=int, default=900, help="seconds per cell")
    parser.add_argument("--publish", action="store_true",
                        help="merge the result into book/seeds.json")
    parser.add_argument("--execute", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.execute:
        return _execute(Path(args.execute), args.timeout)
    for name in ("seeds", "jobs", "timeout"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    if args.start < 0:
        parser.error("--start must be >= 0")
    root = find_root()
    if root is None:
        parser.error("run from inside the book (no _config.yml found above this folder)")
    try:
        chapters = select(chapter_notebooks(root), args.chapter)
    except ValueError as err:
        parser.error(str(err))
    seeds = list(range(args.start, args.start + args.seeds))
    began = time.perf_counter()
    report = sweep(chapters, seeds, args.jobs, args.timeout)
    elapsed = time.perf_counter() - began
    print(format_report(report))
    print(f"\n{len(chapters)} chapters × {len(seeds)} seeds in {elapsed / 60:.1f} min "
          f"({args.jobs} at once)")
    out = root / "_build" / "seeds.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    if args.publish:
        meta = {"chapters": sorted(chapters), "seeds": seeds, "jobs": args.jobs,
                "minutes": round(elapsed / 60, 1), "cpus": os.cpu_count(),
                "date": time.strftime("%Y-%m-%d")}
        publish(report, root / "book" / "seeds.json", meta)
        print(f"published: {root / 'book' / 'seeds.json'}")
    bad = [c for e in report.values() for c in e["claims"] if c["passed"] < c["seeds"]]
    return 1 if bad or any(e["errors"] for e in report.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
