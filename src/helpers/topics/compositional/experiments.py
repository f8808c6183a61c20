"""Compositional targets and the deep-vs-shallow experiment at equal parameter count.

A binary-tree compositional function of n = 2^L variables applies one 2-input constituent h
at every node of a binary tree, e.g. for n = 8

    f(x) = h(h(h(x1, x2), h(x3, x4)), h(h(x5, x6), h(x7, x8))).

Mhaskar, Liao & Poggio (arXiv:1603.00988) and Poggio et al. (arXiv:1611.00740) show that a
shallow network needs N = O(ε^(−n/m)) units to approximate such an f (of smoothness m) to
accuracy ε, a deep network with the same tree only N = O((n − 1) ε^(−2/m)). The experiment here
trains a :class:`~helpers.topics.compositional.models.TreeNet` and a
:class:`~helpers.topics.compositional.models.ShallowNet` with the same parameter count and the same
training budget on such a target, with the tree either matched to the target's or not.

Introduced in the chapter "Deep vs shallow networks on compositional functions".
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

import torch

from helpers.core.seeding import map_in_threads, one_cpu_thread
from helpers.topics.compositional.backprop import mse_backward_
from helpers.topics.compositional.models import (
    ShallowNet,
    TreeNet,
    pairing_permutation,
)

Constituent = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

#: Smooth 2-input constituents h(a, b), each mapping [−1, 1]² into [−1, 1].
CONSTITUENTS: dict[str, Constituent] = {
    "product": lambda a, b: a * b + (a - b) / 2,  # ab + (a − b)/2
    "tanh-mix": lambda a, b: torch.tanh(2 * a * b + a - b),  # tanh(2ab + a − b)
    "quadratic": lambda a, b: a * a + b * b - 1,  # a² + b² − 1: even in each argument
    "additive": lambda a, b: torch.tanh(a + b),  # tanh(a + b): a ridge function at each node
    # |ab| + (a − b)/2: "product" with a kink along a = 0 and b = 0; Lipschitz (m = 1), so its
    # smoothness is finite and no polynomial (no finite shallow network) represents it.
    "abs-product": lambda a, b: (a * b).abs() + (a - b) / 2,
}


def check_constituent(h: Constituent | str) -> Constituent:
    """``h`` itself (or the named entry of ``CONSTITUENTS``) after checking it maps two
    tensors of shape (B,) to one finite tensor of shape (B,); else ``TypeError``/``ValueError``."""
    if isinstance(h, str):
        if h not in CONSTITUENTS:
            raise ValueError(f"h must be callable or one of {sorted(CONSTITUENTS)}, got {h!r}")
        return CONSTITUENTS[h]
    if not callable(h):
        raise TypeError(f"h must be a callable h(a, b) -> tensor, got {type(h).__name__}")
    a = torch.linspace(-1, 1, 5)  # cpu: a five-point probe of h, not the experiment's data
    b = a.flip(0)
    try:
        out = h(a, b)
    except Exception as err:  # any failure means h is not a 2-input tensor map
        raise TypeError(f"h must map two tensors to one; h(a, b) raised {err!r}") from None
    if not isinstance(out, torch.Tensor) or out.shape != a.shape:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"h(a, b) must return a tensor of the inputs' shape (5,), got {got}")
    if not torch.isfinite(out).all():
        raise ValueError("h(a, b) returned non-finite values on [-1, 1]^2")
    return h


def compositional_target(h: Constituent | str, n_inputs: int = 8,
                         pairing: str | Sequence[int] = "matched"
                         ) -> Callable[[torch.Tensor], torch.Tensor]:
    """f(x) = h applied over the binary tree of the inputs ordered by ``pairing``.

    Each level replaces the values z_1 … z_m by h(z_1, z_2), h(z_3, z_4), …: vectorised, no loop
    over nodes. The returned ``f`` maps (..., n_inputs) to (...).
    """
    h = check_constituent(h)
    perm = pairing_permutation(n_inputs, pairing)

    def f(x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != n_inputs:
            raise ValueError(f"x must have last dimension {n_inputs}, got {tuple(x.shape)}")
        z = x[..., perm]
        while z.shape[-1] > 1:
            z = h(z[..., 0::2], z[..., 1::2])
        return z[..., 0]

    return f


@dataclass(frozen=True)
class Budget:
    """The identical training budget of both networks, and the experiment's sizes."""

    k: int = 8  # hidden units per tree node; 8 makes the counts equal exactly (231 at n = 8)
    reps: int = 5  # independent initialisations of each network (averaged)
    steps: int = 1200  # Adam steps, fresh uniform samples every step
    batch: int = 256  # samples per step
    lr: float = 0.05  # Adam's peak learning rate, cosine-decayed to 0
    warmup: float = 0.1  # fraction of the steps with a linear warm-up from 0 to lr
    n_test: int = 4096  # held-out points for the relative error
    activation: str = "gelu"  # of both networks (smooth, as in the theorem)

    def __post_init__(self):
        for name in ("k", "reps", "steps", "batch", "n_test"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not self.lr > 0 or not 0 <= self.warmup < 1:
            raise ValueError(f"need lr > 0 and 0 <= warmup < 1, got {self.lr}, {self.warmup}")


QUICK = Budget()
FULL = Budget(reps=6, steps=5000, batch=512, n_test=65_536)


def budget_for(mode: str | None = None, **overrides) -> Budget:
    """``QUICK`` or ``FULL`` (``mode=None`` reads ``BOOK_MODE``), with overrides."""
    if mode is None:
        from helpers.core.config import get_config

        mode = get_config().mode
    if mode not in ("quick", "full"):
        raise ValueError(f"mode must be 'quick', 'full' or None, got {mode!r}")
    return replace(QUICK if mode == "quick" else FULL, **overrides)


def relative_mse(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """mean((f̂ − f)²) / var(f) over the last axis: 1 for the best constant predictor."""
    return ((pred - y) ** 2).mean(-1) / y.var(-1)


def lr_schedule(t: int, budget: Budget) -> float:
    """Learning rate at step t: linear warm-up over ``warmup * steps``, then cosine decay to 0."""
    warm = int(budget.warmup * budget.steps)
    if t < warm:
        return budget.lr * (t + 1) / warm
    return budget.lr * 0.5 * (1 + math.cos(math.pi * (t - warm) / (budget.steps - warm)))


#: Training samples drawn (and their targets evaluated) per call, ~1 MB of inputs.
_SAMPLES_PER_CHUNK = 32_768


def _train_jobs(jobs: Sequence[tuple[int, Sequence[Callable[[torch.Tensor], torch.Tensor]]]],
                *, n_inputs: int, budget: Budget, seed: int,
                device: torch.device | str) -> list[dict]:
    """:func:`_train_group` of every job, the jobs split into as many groups as torch has CPU
    threads, each group's loop on its own core (:func:`helpers.map_in_threads`).

    A group draws the same samples as the whole (its own generator from ``seed``) and every
    network its own initialisation, so the split changes no result. The groups are balanced by
    a job's cost, (number of targets)·k², greatest first onto the lightest group.
    """
    if not jobs:
        raise ValueError("every job must hold at least one target function")
    on_cpu = torch.device(device).type == "cpu"
    n_groups = min(len(jobs), torch.get_num_threads() if on_cpu else 1)
    cost = [len(targets) * k**2 for k, targets in jobs]
    groups: list[list[int]] = [[] for _ in range(n_groups)]
    load = [0] * n_groups
    for j in sorted(range(len(jobs)), key=lambda j: -cost[j]):
        g = load.index(min(load))
        groups[g].append(j)
        load[g] += cost[j]
    groups = [sorted(group) for group in groups if group]
    runs = map_in_threads(lambda group: _train_group(
        [jobs[j] for j in group], n_inputs=n_inputs, budget=budget, seed=seed, device=device),
        groups)
    by_job = {j: run for group, part in zip(groups, runs, strict=True)
              for j, run in zip(group, part, strict=True)}
    return [by_job[j] for j in range(len(jobs))]


def _train_group(jobs: Sequence[tuple[int, Sequence[Callable[[torch.Tensor], torch.Tensor]]]],
                 *, n_inputs: int, budget: Budget, seed: int,
                 device: torch.device | str) -> list[dict]:
    """Train, for every job (k, targets), ``budget.reps`` copies of a TreeNet of node width k
    and of its equal-size ShallowNet per target, all jobs in one loop.

    Every network's initialisation seed and the sample generator are those of its own run
    (they depend on neither k nor the other jobs), so a job whose targets equal another run's
    gets exactly that run's updates: the loss is summed over all networks and Adam is
    element-wise. Paying the per-step overhead once is what makes several widths and targets
    affordable. A target shared by several jobs (the same object) is evaluated once per step.
    """
    from helpers.core.progress import progress

    if not jobs or any(not targets for _, targets in jobs):
        raise ValueError("every job must hold at least one target function")
    gen = torch.Generator().manual_seed(int(seed))  # cpu: the same samples on every device
    unique = list({id(f): f for _, targets in jobs for f in targets}.values())
    where = {id(f): i for i, f in enumerate(unique)}
    pairs, rows = [], []
    for k, targets in jobs:
        n_models = len(targets) * budget.reps
        deep = TreeNet(n_inputs, k, n_models=n_models, activation=budget.activation,
                       seed=1_000 * seed + 1, device=device)
        pairs.append((deep, ShallowNet.matching(deep, n_models=n_models,
                                                activation=budget.activation,
                                                seed=1_000 * seed + 2, device=device)))
        idx = torch.tensor([where[id(f)] for f in targets], device=device)  # (targets,)
        rows.append(idx.repeat_interleave(budget.reps))  # (n_models,)
    nets = [net for pair in pairs for net in pair]

    def sample(m: int, steps: int = 1) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``steps`` batches of m samples and every job's targets, drawn and evaluated at once.

        One draw of (steps·m, n) uniforms consumes the generator exactly as ``steps`` draws of
        (m, n), and the targets are element-wise maps of x, so batch t equals what a draw per
        step would give; evaluating the targets once per chunk instead of once per step
        removes most of their per-call overhead.
        """
        u = torch.rand(steps * m, n_inputs, generator=gen)  # cpu: generator shared by devices
        x = (2 * u - 1).to(device)  # (steps·m, n)
        y = torch.stack([f(x) for f in unique])  # (targets, steps·m)
        return x.view(steps, m, n_inputs), [y[r].view(-1, steps, m).transpose(0, 1)
                                            for r in rows]  # (steps, m, n), (steps, models, m)

    # Adam's update is element-wise, so one optimiser over every network equals one per network.
    params = [p for net in nets for p in net.parameters()]
    fused = all(p.device.type in ("cpu", "cuda") for p in params)  # one kernel for all tensors
    opt = torch.optim.Adam(params, lr=budget.lr, fused=fused, foreach=None if fused else True)
    chunk = max(1, _SAMPLES_PER_CHUNK // budget.batch)  # steps whose samples are drawn at once
    with one_cpu_thread():
        for t in progress(range(budget.steps), desc="training steps"):
            for group in opt.param_groups:
                group["lr"] = lr_schedule(t, budget)
            if t % chunk == 0:
                xs, ys_chunk = sample(budget.batch, min(chunk, budget.steps - t))
            x = xs[t % chunk]
            for pair, y in zip(pairs, ys_chunk, strict=True):
                for net in pair:  # ∂/∂θ Σ_copies mean_B (f − y)², by hand: no autograd graph
                    mse_backward_(net, x, y[t % chunk])
            opt.step()
        x, ys = sample(budget.n_test)
        x, ys = x[0], [y[0] for y in ys]
        out = []
        with torch.no_grad():
            for (deep, shallow), y, (_, targets) in zip(pairs, ys, jobs, strict=True):
                shape = (len(targets), budget.reps)
                out.append({"relmse_deep": relative_mse(deep(x), y).view(shape).cpu(),
                            "relmse_shallow": relative_mse(shallow(x), y).view(shape).cpu(),
                            "params_deep": deep.num_parameters(),
                            "params_shallow": shallow.num_parameters()})
        return out


def train_deep_and_shallow(targets: Sequence[Callable[[torch.Tensor], torch.Tensor]], *,
                           n_inputs: int = 8, budget: Budget = QUICK, seed: int = 0,
                           device: torch.device | str = "cpu") -> dict:
    """Train ``budget.reps`` copies of a TreeNet and of its equal-size ShallowNet per target.

    All copies (targets × reps, deep and shallow) train in one batched run with one Adam
    optimiser: the summed loss leaves each copy's gradient and Adam update its own, and both
    networks see the same samples x ~ U[−1, 1]^n at every step and the same schedule.

    Returns a dict with ``relmse_deep`` and ``relmse_shallow`` (tensors of shape
    (targets, reps), on ``n_test`` held-out points), ``params_deep`` and ``params_shallow``.
    """
    (res,) = _train_jobs([(budget.k, targets)], n_inputs=n_inputs, budget=budget, seed=seed,
                         device=device)
    return res


def _device(device: torch.device | str | None) -> torch.device | str:
    if device is not None:
        return device
    from helpers.core.config import get_config

    return get_config().device


def deep_vs_shallow_grid(hs: Sequence[Constituent | str], pairings: Sequence[str] = (
        "matched", "mismatched"), *, n_inputs: int = 8, seed: int = 0, mode: str | None = None,
        device: torch.device | str | None = None,
        others: Mapping[str, Callable[[torch.Tensor], torch.Tensor]] | None = None,
        **budget_overrides) -> list[dict]:
    """:func:`deep_vs_shallow` for every (h, pairing), all trained in one batched run.

    ``others`` adds any further targets f(x) (name → callable on (..., n_inputs)), compositional
    or not, to the same run. Returns one dict per target, first ``for h in hs for pairing in
    pairings`` then ``others``, with the keys of :func:`deep_vs_shallow` plus ``h`` (the name,
    or the callable's ``__name__``) and ``pairing`` (``None`` for ``others``).
    """
    names = [(h if isinstance(h, str) else getattr(h, "__name__", repr(h)), p)
             for h in hs for p in pairings]
    targets = [compositional_target(h, n_inputs, p) for h in hs for p in pairings]
    for name, f in (others or {}).items():
        if not callable(f):
            raise TypeError(f"others[{name!r}] must be a callable f(x), got {type(f).__name__}")
        names.append((name, None))
        targets.append(f)
    res = train_deep_and_shallow(targets, n_inputs=n_inputs, seed=seed,
                                 budget=budget_for(mode, **budget_overrides),
                                 device=_device(device))
    rows = []
    for i, (name, p) in enumerate(names):
        deep, shallow = res["relmse_deep"][i], res["relmse_shallow"][i]
        rows.append({"h": name, "pairing": p, "relmse_deep": deep.mean().item(),
                     "relmse_shallow": shallow.mean().item(),
                     "params_deep": res["params_deep"], "params_shallow": res["params_shallow"],
                     "ratio": (shallow.mean() / deep.mean()).item(),
                     "reps_deep": deep.tolist(), "reps_shallow": shallow.tolist()})
    return rows


def deep_vs_shallow(h: Constituent | str, *, n_inputs: int = 8,
                    pairing: str | Sequence[int] = "matched", seed: int = 0,
                    mode: str | None = None, **budget_overrides) -> dict:
    """The whole experiment for one constituent ``h`` (a 2-input torch callable or a name).

    Target: :func:`compositional_target` (h, n_inputs, pairing); networks: a TreeNet with the
    network's fixed adjacent pairing and a ShallowNet with the same parameter count; budget:
    :func:`budget_for` (``mode``, ``**budget_overrides``), ``mode=None`` reading ``BOOK_MODE``;
    device: ``BOOK_DEVICE``.

    Returns:
        dict with ``relmse_deep``, ``relmse_shallow`` (means over ``reps`` initialisations),
        ``params_deep``, ``params_shallow``, ``ratio`` (relmse_shallow / relmse_deep) and the
        per-initialisation errors ``reps_deep``, ``reps_shallow`` (lists).
    """
    pairing = pairing if isinstance(pairing, str) else list(pairing)
    (row,) = deep_vs_shallow_grid([h], [pairing], n_inputs=n_inputs, seed=seed, mode=mode,
                                  **budget_overrides)
    return row


def error_vs_parameters(h: Constituent | str, ks: Sequence[int], *, n_inputs: int = 8,
                        pairing: str | Sequence[int] = "matched", seed: int = 0,
                        mode: str | None = None, **budget_overrides) -> dict:
    """Relative errors of both networks at equal parameter counts, at every node width k.

    Every width trains exactly as in its own :func:`train_deep_and_shallow` run (same
    initialisation seeds, samples and schedule); all widths share one training loop.

    Returns a dict with ``params_deep``, ``params_shallow`` (lists, one per k) and
    ``relmse_deep``, ``relmse_shallow`` (tensors of shape (len(ks), reps)).
    """
    if not ks:
        raise ValueError("ks must hold at least one node width")
    target = compositional_target(h, n_inputs, pairing)
    budgets = [budget_for(mode, **{**budget_overrides, "k": k}) for k in ks]  # checks each k
    runs = _train_jobs([(k, [target]) for k in ks], n_inputs=n_inputs, budget=budgets[0],
                       seed=seed, device=_device(None))
    return {"params_deep": [r["params_deep"] for r in runs],
            "params_shallow": [r["params_shallow"] for r in runs],
            "relmse_deep": torch.stack([r["relmse_deep"][0] for r in runs]),
            "relmse_shallow": torch.stack([r["relmse_shallow"][0] for r in runs])}



def deep_vs_shallow_study(hs: Sequence[Constituent | str], pairings: Sequence[str] = (
        "matched", "mismatched"), *, curve_h: Constituent | str, widths: Sequence[int],
        n_inputs: int = 8, seed: int = 0, mode: str | None = None,
        device: torch.device | str | None = None,
        others: Mapping[str, Callable[[torch.Tensor], torch.Tensor]] | None = None,
        **budget_overrides) -> dict:
    """:func:`deep_vs_shallow_grid` at the budget's k and :func:`error_vs_parameters` of
    ``curve_h`` (every pairing) at ``widths``, all in one training loop.

    The grid's targets train at node width ``budget.k``; the curve's targets at every width in
    ``widths``; where the two meet (``curve_h`` in ``hs`` and ``budget.k`` in ``widths``) the
    curve's point is the grid's own networks.

    Returns ``{"grid": rows as in deep_vs_shallow_grid, "curves": {pairing: curve}}``, each
    curve a dict as returned by :func:`error_vs_parameters`.
    """
    if not widths:
        raise ValueError("widths must hold at least one node width")
    budget = budget_for(mode, **budget_overrides)
    for k in widths:
        replace(budget, k=k)  # checks every width
    names = [(h if isinstance(h, str) else getattr(h, "__name__", repr(h)), p)
             for h in hs for p in pairings]
    grid = {key: compositional_target(h, n_inputs, p)
            for key, (h, p) in zip(names, [(h, p) for h in hs for p in pairings], strict=True)}
    for name, f in (others or {}).items():
        if not callable(f):
            raise TypeError(f"others[{name!r}] must be a callable f(x), got {type(f).__name__}")
        grid[(name, None)] = f
    curve_name = curve_h if isinstance(curve_h, str) else getattr(curve_h, "__name__", "")
    curve = {p: grid.get((curve_name, p)) or compositional_target(curve_h, n_inputs, p)
             for p in pairings}
    jobs = []
    for k in sorted(set(widths) | {budget.k}):
        targets = list(grid.values()) if k == budget.k else []
        if k in widths:
            targets += [f for f in curve.values() if all(f is not g for g in targets)]
        jobs.append((k, targets))
    runs = _train_jobs(jobs, n_inputs=n_inputs, budget=budget, seed=seed,
                       device=_device(device))
    by_k = {k: (targets, run) for (k, targets), run in zip(jobs, runs, strict=True)}

    def errors(k: int, f) -> tuple[torch.Tensor, torch.Tensor]:
        targets, run = by_k[k]
        i = next(j for j, g in enumerate(targets) if g is f)
        return run["relmse_deep"][i], run["relmse_shallow"][i]

    rows = []
    for key, f in grid.items():
        deep, shallow = errors(budget.k, f)
        run = by_k[budget.k][1]
        rows.append({"h": key[0], "pairing": key[1], "relmse_deep": deep.mean().item(),
                     "relmse_shallow": shallow.mean().item(),
                     "params_deep": run["params_deep"], "params_shallow": run["params_shallow"],
                     "ratio": (shallow.mean() / deep.mean()).item(),
                     "reps_deep": deep.tolist(), "reps_shallow": shallow.tolist()})
    curves = {}
    for p, f in curve.items():
        pts = [errors(k, f) for k in widths]
        curves[p] = {"params_deep": [by_k[k][1]["params_deep"] for k in widths],
                     "params_shallow": [by_k[k][1]["params_shallow"] for k in widths],
                     "relmse_deep": torch.stack([d for d, _ in pts]),
                     "relmse_shallow": torch.stack([s for _, s in pts])}
    return {"grid": rows, "curves": curves}


def power_law_fit(params: Sequence[int], errors: torch.Tensor) -> tuple[float, float]:
    """Exponent α of error ≈ C·P^(−α) and its standard error, by least squares of log error
    on log P over every point (``errors`` of shape (len(params), reps): one per initialisation).

    The standard error is the slope's usual OLS one, σ̂ / sqrt(Σ (log P − mean)²), with σ̂² the
    residual variance on n − 2 degrees of freedom; it needs at least two distinct sizes and
    three points.
    """
    errors = torch.as_tensor(errors, dtype=torch.float64)  # cpu: keeps the input's device
    if errors.dim() == 1:
        errors = errors[:, None]
    if errors.shape[0] != len(params):
        raise ValueError(f"errors must have one row per size ({len(params)}), "
                         f"got shape {tuple(errors.shape)}")
    if not bool((errors > 0).all()):
        raise ValueError("errors must be positive to take logarithms")
    logp = torch.log(torch.as_tensor(params, dtype=torch.float64, device=errors.device))
    x = logp.repeat_interleave(errors.shape[1])
    y = errors.log().flatten()
    if x.numel() < 3 or len(set(params)) < 2:
        raise ValueError("need at least two distinct sizes and three points")
    xc = x - x.mean()
    slope = (xc * (y - y.mean())).sum() / (xc ** 2).sum()
    resid = y - y.mean() - slope * xc
    se = (resid.pow(2).sum() / (x.numel() - 2) / (xc ** 2).sum()).sqrt()
    return -slope.item(), se.item()
