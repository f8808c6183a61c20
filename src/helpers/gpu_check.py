"""``python -m helpers.gpu_check`` (``make gpu-check``): measure the book on a GPU in one run.

Within a time budget (default 510 s, inside a 9-minute device call) it

1. runs the unit tests on the device (``BOOK_TEST_DEVICE``),
2. runs every chapter in quick mode on the device and compares each claim's verdict with the
   CPU ledger of the same seed (``--cpu-claims``, default ``_build/claims`` from ``make test``),
3. runs as many chapters in full mode as fit in the time left, the fastest (by the published
   CPU quick-mode times in ``book/bench.json``) first, recording time, peak GPU memory and
   verdicts,
4. writes ``book/gpu.json`` (shown in the *Performance* appendix) and, when ``$OUT`` is set,
   a copy there.

Each chapter runs in a fresh kernel (see :func:`helpers.seeds.run_notebook`). On a machine
without a GPU, ``--device cpu`` exercises the same script.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from helpers.core.ledger import find_root, load_ledger
from helpers.seeds import chapter_notebooks, run_notebook, select


def verdicts(folder: Path) -> dict[str, dict[str, bool]]:
    """chapter → claim → passed, for the ledger files in ``folder``."""
    out: dict[str, dict[str, bool]] = {}
    for record in load_ledger(folder) if folder.is_dir() else []:
        out.setdefault(record.chapter, {})[record.claim] = record.passed
    return out


def compare(device: dict[str, bool], cpu: dict[str, bool] | None) -> dict:
    """How one chapter's device verdicts agree with the CPU's (None: no CPU ledger)."""
    if cpu is None:
        return {"cpu_ledger": False, "match": None, "differ": []}
    differ = sorted(c for c in set(device) | set(cpu) if device.get(c) != cpu.get(c))
    return {"cpu_ledger": True, "match": not differ, "differ": differ}


def peak_memory(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def run_chapter(name: str, notebook: Path, mode: str, device: str, seed: int, timeout: int,
                tmp: Path) -> tuple[dict, dict[str, bool]]:
    """Run one chapter; its record for gpu.json and its verdicts."""
    claims, peak = tmp / f"{name}-{mode}", tmp / f"{name}-{mode}.peak"
    claims.mkdir()
    outcome = run_notebook(notebook, seed, claims, timeout, mode=mode, device=device,
                           extra_env={"BOOK_PEAK_MEMORY_FILE": str(peak)})
    got = verdicts(claims).get(name, {})
    record = {"seconds": outcome["seconds"], "error": outcome["error"],
              "peak_memory_mb": None if peak_memory(peak) is None
              else round(peak_memory(peak) / 2**20, 1),
              "claims": len(got), "passed": sum(got.values())}
    return record, got


def cpu_times(root: Path) -> dict[str, float]:
    """Published CPU quick-mode seconds per chapter (``book/bench.json``), if any."""
    path = root / "book" / "bench.json"
    if not path.is_file():
        return {}
    rows = json.loads(path.read_text()).get("notebooks", [])
    return {Path(r["notebook"]).stem.replace("_", "-"): float(r["seconds"]) for r in rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers.gpu_check",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda", help="device to measure (default cuda)")
    parser.add_argument("--budget", type=float, default=510, help="seconds for everything")
    parser.add_argument("--chapter", action="append", help="limit to these chapters")
    parser.add_argument("--cpu-claims", default="_build/claims",
                        help="CPU ledger of the same seed to compare with")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-unit", action="store_true", help="skip the unit tests")
    parser.add_argument("--output", default="book/gpu.json")
    args = parser.parse_args(argv)
    root = find_root()
    if root is None:
        parser.error("run from inside the book (no _config.yml found)")
    began = time.perf_counter()
    left = lambda: args.budget - (time.perf_counter() - began)  # noqa: E731
    chapters = select(chapter_notebooks(root), args.chapter)
    report: dict = {"device": args.device, "seed": args.seed, "date": time.strftime("%Y-%m-%d"),
                    "machine": _describe(args.device), "unit": None, "quick": {}, "full": {}}
    if not args.skip_unit:
        start = time.perf_counter()
        unit = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests",
             "--ignore=tests/browser", "-x"],
            env=dict(os.environ, BOOK_TEST_DEVICE=args.device, OMP_NUM_THREADS="1"),
            capture_output=True, text=True, cwd=root, timeout=max(left() * 0.3, 30))
        tail = [ln for ln in unit.stdout.splitlines() if ln.strip()][-1:] or [""]
        report["unit"] = {"passed": unit.returncode == 0, "summary": tail[0],
                          "seconds": round(time.perf_counter() - start, 1)}
        print(f"unit tests on {args.device}: {tail[0]}", flush=True)
    cpu = verdicts(root / args.cpu_claims)
    times = cpu_times(root)
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        for name, notebook in chapters.items():
            if left() < 30:
                report["quick"][name] = {"skipped": "out of time"}
                continue
            record, got = run_chapter(name, notebook, "quick", args.device, args.seed,
                                      int(max(left(), 30)), Path(tmp))
            record |= compare(got, cpu.get(name))
            report["quick"][name] = record
            print(f"quick {name}: {record['seconds']} s, {record['passed']}/{record['claims']}"
                  f" as expected, matches CPU: {record['match']}", flush=True)
        for name in sorted(chapters, key=lambda n: times.get(n, float("inf"))):
            if left() < 60:
                break
            record, _ = run_chapter(name, chapters[name], "full", args.device, args.seed,
                                    int(left()), Path(tmp))
            report["full"][name] = record
            print(f"full {name}: {record['seconds']} s, {record['passed']}/{record['claims']}"
                  f" as expected, peak {record['peak_memory_mb']} MB, error {record['error']}",
                  flush=True)
    report["seconds"] = round(time.perf_counter() - began, 1)
    text = json.dumps(report, indent=1) + "\n"
    (root / args.output).write_text(text)
    if os.environ.get("OUT"):
        Path(os.environ["OUT"], "gpu.json").write_text(text)
    print(f"wrote {args.output} ({report['seconds']} s)")
    quick_ok = all(r.get("match") is not False and not r.get("error")
                   for r in report["quick"].values() if "skipped" not in r)
    return 0 if quick_ok and (report["unit"] is None or report["unit"]["passed"]) else 1


def _describe(device: str) -> str:
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(torch.device(device))}, torch {torch.__version__}"
    return f"CPU ({os.cpu_count()} cores), torch {torch.__version__}"


if __name__ == "__main__":
    sys.exit(main())
