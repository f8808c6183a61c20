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
kept), which the book's *Reproducibility* page and every chapter header show.

Each task (one chapter under one seed, in its own kernel with one CPU thread) runs on Dask
distributed: by default on an embedded ``LocalCluster`` of ``--jobs`` single-threaded worker
processes; ``--scheduler ADDRESS`` sends the tasks to a running Dask cluster instead (a cluster
of machines or GPUs whose workers see this checkout at the same path). Each task returns its
claim records, so the merged report does not depend on where it ran.
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
from dataclasses import asdict
from pathlib import Path

from helpers.core.ledger import ClaimRecord, find_root, load_ledger
from helpers.kernel_polling import poll_kernel_in_slices

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

    poll_kernel_in_slices()
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


def run_task(name: str, notebook: str, seed: int, timeout: int) -> dict:
    """One chapter under one seed, in a fresh kernel: its outcome and its claim records.

    Runs wherever a Dask worker runs it; the records travel back as plain dicts.
    """
    with tempfile.TemporaryDirectory(prefix="book-seed-") as tmp:
        outcome = run_notebook(Path(notebook), seed, Path(tmp), timeout)
        records = [asdict(r) for r in load_ledger(tmp)]
    return {"name": name, "seed": seed, "outcome": outcome, "records": records}


def sweep(chapters: dict[str, Path], seeds: list[int], jobs: int, timeout: int,
          scheduler: str | None = None) -> dict:
    """Run every (chapter, seed) task on Dask; the summary per chapter.

    ``scheduler`` is the address of a running Dask scheduler; without it an embedded
    ``LocalCluster`` of ``jobs`` single-threaded worker processes runs the tasks.
    """
    from dask.distributed import Client, LocalCluster, as_completed

    from helpers.core.progress import progress

    tasks = [(name, str(path), seed) for name, path in chapters.items() for seed in seeds]
    cluster = None if scheduler else LocalCluster(
        n_workers=jobs, threads_per_worker=1, processes=True, dashboard_address=None,
        silence_logs=40)
    results: dict[str, dict[int, tuple[dict, list[ClaimRecord]]]] = {}
    try:
        with Client(scheduler or cluster) as client:
            futures = [client.submit(run_task, name, path, seed, timeout, pure=False)
                       for name, path, seed in tasks]
            for future in progress(as_completed(futures), total=len(futures),
                                   desc="chapter × seed"):
                done = future.result()
                records = [ClaimRecord(**row) for row in done["records"]]
                results.setdefault(done["name"], {})[done["seed"]] = (done["outcome"],
                                                                      records)
                status = done["outcome"]["error"] or "ok"
                print(f"{done['name']} seed {done['seed']}: "
                      f"{done['outcome']['seconds']:.0f} s, {status}", flush=True)
    finally:
        if cluster is not None:
            cluster.close()
    report = {}
    for name in chapters:
        per_seed = dict(sorted(results.get(name, {}).items()))
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
    parser.add_argument("--jobs", type=int, default=2,
                        help="worker processes of the embedded Dask cluster (default 2)")
    parser.add_argument("--scheduler", default=None,
                        help="address of a running Dask scheduler (default: a LocalCluster)")
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
    report = sweep(chapters, seeds, args.jobs, args.timeout, args.scheduler)
    elapsed = time.perf_counter() - began
    print(format_report(report))
    where = args.scheduler or f"{args.jobs} local workers"
    print(f"\n{len(chapters)} chapters × {len(seeds)} seeds in {elapsed / 60:.1f} min "
          f"({where})")
    out = root / "_build" / "seeds.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    if args.publish:
        meta = {"chapters": sorted(chapters), "seeds": seeds, "jobs": args.jobs,
                "scheduler": args.scheduler,
                "minutes": round(elapsed / 60, 1), "cpus": os.cpu_count(),
                "date": time.strftime("%Y-%m-%d")}
        publish(report, root / "book" / "seeds.json", meta)
        print(f"published: {root / 'book' / 'seeds.json'}")
    bad = [c for e in report.values() for c in e["claims"] if c["passed"] < c["seeds"]]
    return 1 if bad or any(e["errors"] for e in report.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
