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

from helpers.core.seeding import one_cpu_thread
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
    a, b = torch.linspace(-1, 1, 5), torch.linspace(1, -1, 5)
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


def _train_widths(targets: Sequence[Callable[[torch.Tensor], torch.Tensor]], ks: Sequence[int],
                  *, n_inputs: int, budget: Budget, seed: int,
                  device: torch.device | str) -> list[dict]:
    """:func:`train_deep_and_shallow` at every node width k in ``ks``, all in one loop.

    Each width gets exactly the networks, samples and schedule of its own run (the networks'
    initialisation seeds and the sample generator do not depend on k), so training them side
    by side, with the loss summed over all networks and one element-wise Adam, gives each the
    same updates as one run per width while paying the per-step overhead once.
    """
    from helpers.core.progress import progress

    if not targets:
        raise ValueError("targets must hold at least one target function")
    n_models = len(targets) * budget.reps
    gen = torch.Generator().manual_seed(int(seed))
    pairs = []
    for k in ks:
        deep = TreeNet(n_inputs, k, n_models=n_models, activation=budget.activation,
                       seed=1_000 * seed + 1, device=device)
        pairs.append((deep, ShallowNet.matching(deep, n_models=n_models,
                                                activation=budget.activation,
                                                seed=1_000 * seed + 2, device=device)))
    nets = [net for pair in pairs for net in pair]

    def sample(m: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = (2 * torch.rand(m, n_inputs, generator=gen) - 1).to(device)  # (m, n)
        y = torch.stack([f(x) for f in targets]).repeat_interleave(budget.reps, 0)
        return x, y  # (m, n), (n_models, m)

    # Adam's update is element-wise, so one optimiser over every network equals one per network.
    params = [p for net in nets for p in net.parameters()]
    fused = all(p.device.type in ("cpu", "cuda") for p in params)  # one kernel for all tensors
    opt = torch.optim.Adam(params, lr=budget.lr, fused=fused, foreach=None if fused else True)
    with one_cpu_thread():
        for t in progress(range(budget.steps), desc="training steps"):
            for group in opt.param_groups:
                group["lr"] = lr_schedule(t, budget)
            x, y = sample(budget.batch)
            loss = sum(((net(x) - y) ** 2).mean(-1).sum() for net in nets)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        x, y = sample(budget.n_test)
        shape = (len(targets), budget.reps)
        with torch.no_grad():
            return [{"relmse_deep": relative_mse(deep(x), y).view(shape).cpu(),
                     "relmse_shallow": relative_mse(shallow(x), y).view(shape).cpu(),
                     "params_deep": deep.num_parameters(),
                     "params_shallow": shallow.num_parameters()} for deep, shallow in pairs]


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
    (res,) = _train_widths(targets, [budget.k], n_inputs=n_inputs, budget=budget, seed=seed,
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
    runs = _train_widths([target], ks, n_inputs=n_inputs, budget=budgets[0], seed=seed,
                         device=_device(None))
    return {"params_deep": [r["params_deep"] for r in runs],
            "params_shallow": [r["params_shallow"] for r in runs],
            "relmse_deep": torch.stack([r["relmse_deep"][0] for r in runs]),
            "relmse_shallow": torch.stack([r["relmse_shallow"][0] for r in runs])}

