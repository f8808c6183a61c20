"""Train a grid of asymmetric-feedback MLPs on one data set in a single batched loop.

Every variant of the grid (feedback, concordance q, update rule, seed, step size) is one model
of a :class:`~helpers.topics.weight_symmetry.network.BatchedFeedbackMLP`; all of them share one
Python loop. Models with the same seed share their initial weights, minibatch order,
concordance keys and magnitudes, so differences between variants are paired comparisons.
Introduced in the chapter "How important is weight symmetry in backpropagation?".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from helpers.core.validation import check_choice, check_int, check_positive
from helpers.topics.weight_symmetry.network import RULES, BatchedFeedbackMLP, Variant

__all__ = ["DEFAULT_LR", "RULES", "BatchedFeedbackMLP", "GridResult", "Variant",
           "train_feedback_grid"]

#: The step size of each rule, the best for backprop on digits (3 × 32 hidden units, 300 steps) in a
#: sweep over {0.05, 0.1, 0.2, 0.5} (SGD) and {0.001, 0.003, 0.01} (Batch Manhattan); batch
#: norm trains backprop equally well over 0.05–0.5 and takes the smallest.
DEFAULT_LR = {"sgd": 0.2, "bn": 0.05, "bm": 0.003}


@dataclass(frozen=True)
class GridResult:
    """Learning curves of a grid: ``test_acc``, ``train_loss``, ``angle`` are (M, T) arrays.

    ``angle`` is the angle (degrees) between the update direction of the hidden weights that
    the feedback produces and the true gradient, on a fixed probe batch.
    """

    variants: list[Variant]
    steps: np.ndarray
    test_acc: np.ndarray
    train_loss: np.ndarray
    angle: np.ndarray

    def index(self, feedback: str, rule: str, q: float | None = None,
              lr: float | None = None) -> np.ndarray:
        """Indices of the models (one per seed) with this feedback, rule, q and step size."""
        idx = [i for i, v in enumerate(self.variants)
               if (v.feedback, v.rule, v.q, v.lr) == (feedback, rule, q, lr)]
        if not idx:
            raise ValueError(f"no model with feedback={feedback!r}, rule={rule!r}, q={q!r}, "
                             f"lr={lr!r}")
        return np.asarray(idx)

    def final_acc(self, feedback: str, rule: str, q: float | None = None,
                  lr: float | None = None) -> float:
        """Mean over seeds of the final test accuracy."""
        return float(self.test_acc[self.index(feedback, rule, q, lr), -1].mean())

    def paired_difference(self, a: tuple, b: tuple) -> tuple[float, float]:
        """Mean and standard error over seeds of acc(a) − acc(b), paired by seed.

        ``a`` and ``b`` are ``(feedback, rule[, q[, lr]])`` tuples as for :meth:`index`; the
        models of one seed share initial weights and minibatches, so the differences
        d_s = acc_a(s) − acc_b(s) are independent across seeds and the standard error is
        sd(d_s)/√S.
        """
        ia, ib = self.index(*a), self.index(*b)
        seeds_a = [self.variants[i].seed for i in ia]
        if seeds_a != [self.variants[i].seed for i in ib] or len(ia) < 2:
            raise ValueError("a and b must hold the same seeds, at least two of them")
        d = self.test_acc[ia, -1] - self.test_acc[ib, -1]
        return float(d.mean()), float(d.std(ddof=1) / math.sqrt(len(d)))

    def best_lr(self, feedback: str, rule: str, lrs: Sequence[float | None],
                q: float | None = None) -> float | None:
        """The step size in ``lrs`` whose models end with the lowest mean training loss.

        The loss is measured on the probe batch of training points, so the choice never sees
        the test set; a diverged run (non-finite loss) counts as infinitely bad.
        """
        loss = [self.train_loss[self.index(feedback, rule, q, lr), -1] for lr in lrs]
        score = [float(np.where(np.isfinite(v), v, np.inf).mean()) for v in loss]
        return lrs[int(np.argmin(score))]


def _flat(grads: list[torch.Tensor]) -> torch.Tensor:
    """Per-model concatenation of ``grads``, (M, Σ numel), in float64 (arccos near 1)."""
    out = torch.empty(len(grads[0]), sum(g[0].numel() for g in grads), dtype=torch.float64,
                      device=grads[0].device)
    at = 0
    for g in grads:  # one converting copy per tensor, no float32 concatenation first
        out[:, at:at + g[0].numel()].view(g.shape).copy_(g)
        at += g[0].numel()
    return out


def _angle(fa: torch.Tensor, fb: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Angle (degrees) between the rows of ``fa`` and ``fb``: arccos of ⟨a, b⟩ / (‖a‖ ‖b‖),
    each norm at least ``eps`` (as ``cosine_similarity``), without normalised copies."""
    norms = torch.linalg.vector_norm(fa, dim=1).clamp_min(eps) * \
        torch.linalg.vector_norm(fb, dim=1).clamp_min(eps)
    cos = (torch.linalg.vecdot(fa, fb) / norms).clamp(-1, 1)
    return torch.rad2deg(torch.arccos(cos))


def train_feedback_grid(x_train: torch.Tensor, y_train: torch.Tensor, x_test: torch.Tensor,
                        y_test: torch.Tensor, variants: Sequence[Variant], *,
                        hidden: Sequence[int] = (32, 32, 32), steps: int = 300,
                        batch_size: int = 32, lr: dict[str, float] | None = None,
                        n_evals: int = 10, probe_size: int = 128, scale: float = 1.0,
                        angles: bool = True,
                        seed: int = 0) -> GridResult:
    """Train every variant on one data set in a single batched loop; return learning curves.

    Minibatches are drawn with replacement per seed (models of one seed see the same batches);
    ``n_evals`` evaluations (test accuracy; loss and gradient angle on a fixed probe batch of
    ``probe_size`` training points) are spread evenly over the ``steps`` updates, the last one
    after the final update. Evaluations do not change the training. ``angles=False`` skips
    the gradient angle (two extra backward passes per evaluation) and records NaN instead.
    """
    steps = check_int("steps", steps, low=1)
    batch_size = check_int("batch_size", batch_size, low=1)
    n_evals = check_int("n_evals", n_evals, low=1)
    check_positive("scale", scale)
    lr = DEFAULT_LR | (lr or {})
    if set(lr) != set(RULES) or not all(v > 0 for v in lr.values()):
        raise ValueError(f"lr must map rules {RULES} to positive step sizes, got {lr}")
    k = int(torch.cat([y_train, y_test]).max()) + 1
    for v in variants:
        check_choice("rule", v.rule, RULES)
    order = sorted(range(len(variants)), key=lambda i: (  # runs of one rule and of one form
        RULES.index(variants[i].rule), variants[i].feedback == "random", variants[i].feedback))
    variants = [variants[i] for i in order]  # of V (α W, A sign(W), B): views, not gathers
    net = BatchedFeedbackMLP([x_train.shape[1], *hidden, k], variants, scale=scale,
                             dtype=x_train.dtype, device=x_train.device)  # validates
    eta = torch.tensor([v.lr if v.lr is not None else lr[v.rule] for v in variants],
                       device=x_train.device)
    if not (eta > 0).all():
        raise ValueError("every Variant.lr must be positive")
    m, n = len(variants), len(x_train)
    seeds = sorted({v.seed for v in variants})
    pos = torch.tensor([seeds.index(v.seed) for v in variants], device=x_train.device)
    # cpu: CPU generators keep the minibatches identical on every device
    batch_gens = [torch.Generator().manual_seed(10_007 * s + 1) for s in seeds]  # cpu: see above
    gen = torch.Generator().manual_seed(seed)  # cpu: see above
    probe = torch.randperm(n, generator=gen)[: min(n, probe_size)]  # cpu: moved below
    probe = probe.to(x_train.device)
    xp, yp = x_train[probe].expand(m, -1, -1), y_train[probe].expand(m, -1)
    eval_at = set(np.unique(np.linspace(0, steps, n_evals + 1).round().astype(int)[1:]))
    acc, loss_curve, angle, at = [], [], [], []
    xb = x_train.new_empty((m, batch_size, x_train.shape[1]))  # the minibatches, reused
    yb = y_train.new_empty((m, batch_size))
    for t in range(1, steps + 1):
        idx = torch.stack([torch.randint(n, (batch_size,), generator=g)  # cpu: moved below
                           for g in batch_gens]).to(x_train.device)  # (seeds, b)
        net.redraw_magnitudes(gen)  # gathered per seed, then copied to its models: (M, b, ·)
        _, grads = net.loss_and_grads(torch.index_select(x_train[idx], 0, pos, out=xb),
                                      torch.index_select(y_train[idx], 0, pos, out=yb))
        net.step(grads, eta)
        if t in eval_at:
            at.append(t)
            saved = [[r.clone() for r in pair] for pair in net.running]  # the probe must not
            probe_loss, probe_angle = _probe(net, xp, yp, angles)  # move batch-norm statistics
            net.running = saved
            angle.append(probe_angle)
            loss_curve.append(probe_loss)
            with torch.no_grad():
                logits = net._forward_eval(x_test.expand(m, -1, -1))
                ok = (logits.argmax(-1) == y_test) & torch.isfinite(logits).all(-1)
                acc.append(ok.double().mean(1))
    back = np.argsort(order)  # rows in the caller's order of variants
    as_np = lambda rows: torch.stack(rows, 1).cpu().numpy()[back]  # noqa: E731
    return GridResult([variants[i] for i in back], np.asarray(at), as_np(acc),
                      as_np(loss_curve), as_np(angle))


def _probe(net: BatchedFeedbackMLP, x: torch.Tensor, y: torch.Tensor,
           angles: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Probe-batch loss (M,) and the angle (degrees) between the hidden weights' gradient
    computed with the feedback and the true gradient (V = W); NaN angles if not ``angles``.

    Both gradients start from one forward pass (the backward passes leave it untouched)."""
    if not angles:  # the loss alone: one forward pass, no gradients
        with torch.no_grad():
            loss = net.loss(x, y).double()
        return loss, torch.full_like(loss, math.nan)
    hidden = slice(0, len(net.weights) - 1)
    with torch.no_grad():
        loss, e = net._forward_train(x, y)
        g_fb = _flat(net._backward(e)[hidden])  # copied before the buffers are reused
        g_true = _flat(net._backward(e, true_gradient=True)[hidden])
    return loss.double(), _angle(g_fb, g_true).double()
