"""``python -m helpers.bench``: how fast the book runs, measured, not hoped for.

One run measures and prints:

* ``batched_speedup``: wall time of K = 32 small MLPs (digits, two hidden layers of 64,
  200 full-batch steps) trained one by one with :func:`helpers.engine.batched.train_one`, over the
  same 32 models trained at once with :func:`helpers.engine.batched.train_batched`;
  the same loop on one thread (often faster for tiny steps) gives ``batched_speedup_vs_best``,
  and ``speedup_ceiling`` bounds what any engine doing the same FLOPs could reach;
* ``batched_flops_fraction``: FLOP/s achieved by the batched engine over the FLOP/s of a large
  dense matmul measured in the same run;
* ``notebooks``: quick-mode execution time of every chapter notebook (each in a fresh kernel,
  one after another) and their total, plus the peak memory of the slowest;
* the device, torch version and thread count.

It writes ``_build/bench.json``; ``--publish`` also copies it to ``book/bench.json``, which the
book's *Performance* appendix shows (the book build never re-measures). Ratios, not absolute
times, are what carry over between machines.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from helpers.bench_peers import train_stacked_autograd, train_torch_func
from helpers.core.seeding import default_threads, one_cpu_thread
from helpers.engine.batched import BatchedMLP, train_batched, train_one
from helpers.engine.data import digits
from helpers.engine.models import MLP
from helpers.kernel_polling import poll_kernel_in_slices

WIDTHS = [64, 64, 64, 10]


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def training_flops(widths: list[int], n: int, steps: int, models: int) -> float:
    """≈ FLOPs of full-batch training: 2·n·in·out per layer forward, twice that backward
    (the first layer's input gradient is not needed: once)."""
    per_step = 0.0
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        per_step += 2 * n * a * b * (2 if i == 0 else 3)
    return per_step * steps * models


def matmul_flops_per_second(size: int = 2048, repeats: int = 5,
                            device: torch.device | str = "cpu") -> float:
    """FLOP/s of a dense float32 (size × size) matmul, best of ``repeats``."""
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    a @ b  # warm-up
    best = min(_timed(lambda: _sync(a @ b, device)) for _ in range(repeats))
    return 2 * size**3 / best


def _sync(value, device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def _one_vs_batched(x, y, seeds, steps, batch_size, device, repeats: int) -> dict[str, float]:
    """Seconds for the models trained one by one (with the configured threads and with one
    thread: tiny single-model steps often run faster on one) and trained at once; each the
    best of ``repeats`` runs, the runs interleaved so that a slow spell of a shared machine
    hits all of them alike."""
    def one_by_one() -> None:
        for s in seeds:
            train_one(MLP(WIDTHS, seed=s, device=device), x, y, lr=0.1, steps=steps,
                      batch_size=batch_size)
        _sync(None, device)

    def batched() -> None:
        train_batched(BatchedMLP(WIDTHS, seeds, device=device), x, y, lr=0.1, steps=steps,
                      batch_size=batch_size)
        _sync(None, device)

    def one_thread() -> None:
        with one_cpu_thread():
            one_by_one()

    def torch_func() -> None:
        train_torch_func(WIDTHS, seeds, x, y, lr=0.1, steps=steps, batch_size=batch_size)
        _sync(None, device)

    def stacked() -> None:
        train_stacked_autograd(WIDTHS, seeds, x, y, lr=0.1, steps=steps, batch_size=batch_size)
        _sync(None, device)

    runs = {"one_by_one": one_by_one, "batched": batched, "one_by_one_1thread": one_thread,
            "torch_func": torch_func, "stacked_autograd": stacked}
    times = dict.fromkeys(runs, float("inf"))
    for _ in range(repeats):
        for name, fn in runs.items():
            times[name] = min(times[name], _timed(fn))
    return times


def batched_benchmark(models: int = 32, steps: int = 200, device: torch.device | str = "cpu",
                      repeats: int = 3) -> dict[str, float]:
    """Time one-by-one vs batched training of ``models`` digits MLPs (see module docstring).

    ``batched_speedup`` compares both with the configured threads; ``batched_speedup_vs_best``
    compares the batched engine with the faster of the two one-by-one runs (configured threads
    or one thread). ``speedup_ceiling`` is the roofline bound on any engine that performs the
    same FLOPs: the large matmul's FLOP/s over the FLOP/s of the best one-by-one run. Also
    reports the same comparison with mini-batches of 32 (``..._minibatch``), where each
    single-model step is too small to keep the processor busy. Every time is the best of
    ``repeats`` interleaved runs.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    split = digits(seed=0, device=device)
    x, y = split.x_train, split.y_train
    seeds = list(range(models))
    full = _one_vs_batched(x, y, seeds, steps, None, device, repeats)
    mini = _one_vs_batched(x, y, seeds, steps, 32, device, repeats)
    flops = training_flops(WIDTHS, len(x), steps, models)
    peak = matmul_flops_per_second(device=device)
    best_one = min(full["one_by_one"], full["one_by_one_1thread"])
    best_mini = min(mini["one_by_one"], mini["one_by_one_1thread"])
    return {"one_by_one_s": full["one_by_one"], "one_by_one_1thread_s": full["one_by_one_1thread"],
            "batched_s": full["batched"],
            "batched_speedup": full["one_by_one"] / full["batched"],
            "batched_speedup_vs_best": best_one / full["batched"],
            "batched_flops_per_s": flops / full["batched"],
            "one_by_one_flops_per_s": flops / best_one, "matmul_flops_per_s": peak,
            "batched_flops_fraction": flops / full["batched"] / peak,
            "speedup_ceiling": peak / (flops / best_one),
            "one_by_one_minibatch_s": mini["one_by_one"],
            "one_by_one_minibatch_1thread_s": mini["one_by_one_1thread"],
            "batched_minibatch_s": mini["batched"],
            "batched_speedup_minibatch": mini["one_by_one"] / mini["batched"],
            "batched_speedup_minibatch_vs_best": best_mini / mini["batched"],
            "torch_func_s": full["torch_func"], "stacked_autograd_s": full["stacked_autograd"],
            "torch_func_minibatch_s": mini["torch_func"],
            "stacked_autograd_minibatch_s": mini["stacked_autograd"],
            "speedup_vs_torch_func": full["torch_func"] / full["batched"],
            "speedup_vs_stacked_autograd": full["stacked_autograd"] / full["batched"],
            "speedup_vs_torch_func_minibatch": mini["torch_func"] / mini["batched"],
            "speedup_vs_stacked_autograd_minibatch": mini["stacked_autograd"] / mini["batched"],
            "torch_func_flops_fraction": flops / full["torch_func"] / peak,
            "stacked_autograd_flops_fraction": flops / full["stacked_autograd"] / peak,
            "repeats": repeats}


def _execute_here(path: Path, timeout: int) -> dict[str, float | bool]:
    """Run in the child process: execute ``path`` and report time and the kernel's peak RSS."""
    import resource

    import nbformat
    from nbclient import NotebookClient

    poll_kernel_in_slices()
    nb = nbformat.read(str(path), 4)
    start, ok = time.perf_counter(), True
    try:
        NotebookClient(nb, timeout=timeout,
                       resources={"metadata": {"path": str(path.parent)}}).execute()
    except Exception as err:  # report, do not crash the benchmark
        ok = False
        print(err, file=sys.stderr)
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # the kernel's peak
    return {"seconds": time.perf_counter() - start, "ok": ok, "peak_mb": peak_kb / 1024}


def time_notebook(path: Path, timeout: int = 600,
                  threads: int | None = None) -> dict[str, float | str | bool]:
    """Execute one notebook in a fresh kernel (in a child process); wall time and peak RSS.

    ``threads`` sets the kernel's ``OMP_NUM_THREADS`` (default: inherited). A failed run
    reports the last line of the child's error output as ``error``.
    """
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    env = os.environ | {"BOOK_PROGRESS": "0"}
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    out = subprocess.run([sys.executable, "-m", "helpers.bench", "--time-notebook", str(path),
                          "--timeout", str(timeout)], capture_output=True, text=True, env=env)
    lines = out.stdout.strip().splitlines()
    if not lines:
        row = {"notebook": str(path), "seconds": float("nan"), "ok": False, "peak_mb": 0.0}
    else:
        row = {"notebook": str(path), **json.loads(lines[-1])}
    if not row["ok"]:
        errors = out.stderr.strip().splitlines()
        row["error"] = errors[-1] if errors else "no output"
    return row


def chapter_notebooks(root: Path) -> list[Path]:
    """The .ipynb of every chapter in the table of contents (book/<part>/<name>), in order."""
    import yaml

    toc = yaml.safe_load((root / "_toc.yml").read_text())
    files = [c["file"] for part in toc.get("parts", []) for c in part.get("chapters", [])]
    return [root / f"{f}.ipynb" for f in files if len(Path(f).parts) == 3]


def run(root: Path, *, notebooks: bool = True, notebook_threads: int | None = None) -> dict:
    """Measure everything; returns the JSON-ready report."""
    from helpers.core.config import get_config

    cfg = get_config()
    report: dict = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device": cfg.device_name, "torch": torch.__version__,
        "threads": torch.get_num_threads(), "machine": f"{platform.machine()}, "
        f"{os.cpu_count()} CPUs", "mode": cfg.mode,
    }
    report.update(batched_benchmark(device=cfg.device))
    if notebooks:
        report["notebook_threads"] = notebook_threads or default_threads()
        rows = [time_notebook(p, threads=notebook_threads) | {"notebook": str(p.relative_to(root))}
                for p in chapter_notebooks(root)]
        slowest = max(rows, key=lambda r: r["seconds"], default=None)
        report["notebooks"] = rows
        report["notebooks_total_s"] = sum(r["seconds"] for r in rows)
        report["slowest_notebook_peak_mb"] = slowest["peak_mb"] if slowest else None
    return report


def format_report(report: dict) -> str:
    """The report as a small text table."""
    lines = [f"device {report['device']}, torch {report['torch']}, {report['threads']} threads,"
             f" {report['machine']}, mode {report['mode']}, {report['date']}",
             f"batched_speedup          {report['batched_speedup']:.2f}x "
             f"(one by one {report['one_by_one_s']:.2f} s, batched {report['batched_s']:.2f} s"
             + (f"; best of {report['repeats']} interleaved runs each"
                if "repeats" in report else "") + ")"]
    if "batched_speedup_vs_best" in report:
        lines += [f"  over the faster one-by-one run (one thread took "
                  f"{report['one_by_one_1thread_s']:.2f} s): "
                  f"{report['batched_speedup_vs_best']:.2f}x",
                  f"  roofline ceiling for the same FLOPs: {report['speedup_ceiling']:.2f}x"]
    lines.append(f"  with mini-batches of 32: {report['batched_speedup_minibatch']:.2f}x"
                 + (f" ({report['batched_speedup_minibatch_vs_best']:.2f}x over the faster "
                    "baseline)" if "batched_speedup_minibatch_vs_best" in report else ""))
    lines.append(f"batched_flops_fraction   {report['batched_flops_fraction']:.2f} "
                 f"({report['batched_flops_per_s'] / 1e9:.1f} of "
                 f"{report['matmul_flops_per_s'] / 1e9:.1f} GFLOP/s)")
    if "speedup_vs_torch_func" in report:
        lines += [
            "peers, same 32 models and update, best of the same interleaved runs:",
            f"  torch.func (stack_module_state + vmap(grad)): engine "
            f"{report['speedup_vs_torch_func']:.2f}x faster full batch "
            f"({report['torch_func_s']:.2f} s, flops fraction "
            f"{report['torch_func_flops_fraction']:.2f}), "
            f"{report['speedup_vs_torch_func_minibatch']:.2f}x with mini-batches",
            f"  stacked weights + autograd: engine {report['speedup_vs_stacked_autograd']:.2f}x "
            f"faster full batch ({report['stacked_autograd_s']:.2f} s, flops fraction "
            f"{report['stacked_autograd_flops_fraction']:.2f}), "
            f"{report['speedup_vs_stacked_autograd_minibatch']:.2f}x with mini-batches"]
    if "notebook_threads" in report:
        lines.append(f"notebooks, one after another, {report['notebook_threads']} thread(s) each "
                     "unless a chapter asks for more:")
    for row in report.get("notebooks", []):
        lines.append(f"  {row['notebook']:<55} {row['seconds']:7.1f} s  "
                     f"{row['peak_mb']:7.0f} MB  "
                     f"{'ok' if row['ok'] else 'FAILED: ' + row.get('error', '')}")
    if "notebooks_total_s" in report:
        lines.append(f"notebooks total          {report['notebooks_total_s']:.1f} s; peak memory "
                     f"of the slowest {report['slowest_notebook_peak_mb']:.0f} MB, largest "
                     f"{max(r['peak_mb'] for r in report['notebooks']):.0f} MB")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the table and write ``_build/bench.json``."""
    parser = argparse.ArgumentParser(prog="python -m helpers.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-notebooks", action="store_true", help="skip the notebook timings")
    parser.add_argument("--publish", action="store_true",
                        help="also copy the report to book/bench.json for the book's appendix")
    parser.add_argument("--notebook-threads", type=int, default=None,
                        help="OMP_NUM_THREADS for the notebook kernels (default: inherited)")
    parser.add_argument("--time-notebook", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--timeout", type=int, default=600, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.time_notebook:  # the child process of time_notebook
        print(json.dumps(_execute_here(args.time_notebook, args.timeout)))
        return 0
    root = Path.cwd()
    report = run(root, notebooks=not args.no_notebooks, notebook_threads=args.notebook_threads)
    print(format_report(report))
    out = root / "_build" / "bench.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {out}")
    if args.publish:
        (root / "book" / "bench.json").write_text(json.dumps(report, indent=1) + "\n")
    return 0 if all(r["ok"] for r in report.get("notebooks", [])) else 1


if __name__ == "__main__":
    sys.exit(main())
