"""Train many small asymmetric-feedback MLPs at once: one batched run per data set.

Each model m is an MLP ``widths[0] → … → widths[-1]`` (ReLU) trained with its own feedback
variant, concordance q, update rule and seed; all of them share one Python loop, their weights
stacked along a leading model dimension (``(M, out, in)``) and multiplied with batched matmuls
through :func:`helpers.topics.weight_symmetry.feedback.feedback_matmul`. Update rules
(Liao, Leibo & Poggio 2016):

* ``"sgd"``: θ ← θ − η g;
* ``"bn"``: batch normalisation (learned γ, β) after every hidden linear layer, θ ← θ − η g;
* ``"bm"``: Batch Manhattan, θ ← θ − η_BM sign(g), no normalisation.

Models with the same seed share their initial weights, minibatch order, concordance keys and
magnitudes, so differences between variants are paired comparisons. Introduced in the chapter
"How important is weight symmetry in backpropagation?".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from helpers.core.validation import check_choice, check_int, check_ints, check_positive
from helpers.topics.weight_symmetry.feedback import (
    check_feedback,
    concordance_mask,
    feedback_matmul,
    feedback_matrix,
    random_magnitudes,
)

RULES = ("sgd", "bn", "bm")
#: The step size of each rule, the best for backprop on digits (3 × 32 hidden units, 300 steps) in a
#: sweep over {0.05, 0.1, 0.2, 0.5} (SGD) and {0.001, 0.003, 0.01} (Batch Manhattan); batch
#: norm trains backprop equally well over 0.05–0.5 and takes the smallest.
DEFAULT_LR = {"sgd": 0.2, "bn": 0.05, "bm": 0.003}


@dataclass(frozen=True)
class Variant:
    """One model of the grid: feedback name, concordance q (None: default), update rule, seed,
    and step size (None: the rule's default in :func:`train_feedback_grid`)."""

    feedback: str
    q: float | None
    rule: str
    seed: int
    lr: float | None = None


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


def _batch_norm(z, gamma, beta, running, training, momentum=0.1, eps=1e-5):
    if training:  # statistics over the minibatch, per model and unit
        mean = z.mean(1, keepdim=True)
        var = (z - mean).square().mean(1, keepdim=True)  # biased, as batch norm; faster than var
        with torch.no_grad():
            running[0].lerp_(mean, momentum)
            running[1].lerp_(var, momentum)
    else:
        mean, var = running
    return (z - mean) / torch.sqrt(var + eps) * gamma + beta


class BatchedFeedbackMLP:
    """M MLPs with asymmetric feedback, stacked: weights ``(M, out, in)``, biases ``(M, 1, out)``.

    Args:
        widths: layer sizes ``[d, h_1, …, k]``.
        variants: one :class:`Variant` per model.
        scale: feedback scale of the sign-based and random variants (1: V = sign(W)).
        dtype, device: of every tensor (random draws happen on the CPU, then move).
    """

    def __init__(self, widths: Sequence[int], variants: Sequence[Variant], *,
                 scale: float = 1.0, dtype: torch.dtype = torch.float32,
                 device: torch.device | str = "cpu"):
        widths = check_ints("widths", widths, low=1)
        if len(widths) < 2:
            raise ValueError(f"widths must hold at least two sizes, got {widths}")
        if not variants:
            raise ValueError("variants must not be empty")
        for v in variants:
            check_feedback(v.feedback, v.q)
            check_choice("rule", v.rule, RULES)
        self.widths, self.variants, self.scale = list(widths), list(variants), scale
        self.q = torch.tensor([check_feedback(v.feedback, v.q) for v in variants])  # cpu: masks
        self.device = device = torch.device(device)
        self.bn_idx = torch.tensor([i for i, v in enumerate(variants) if v.rule == "bn"],
                                   dtype=torch.long, device=device)
        self.manhattan = torch.tensor([v.rule == "bm" for v in variants],
                                      device=device)[:, None, None]
        seeds = sorted({v.seed for v in variants})
        pos = torch.tensor([seeds.index(v.seed) for v in variants])  # cpu: indexes CPU draws
        draws = [self._draw(s, dtype) for s in seeds]  # shared by all models of one seed
        stack = lambda key, l: torch.stack([d[key][l] for d in draws])[pos]  # noqa: E731
        n_layers = len(widths) - 1
        self.weights = [stack("w", l).to(device).requires_grad_() for l in range(n_layers)]
        self.biases = [stack("b", l)[:, None, :].to(device).requires_grad_()
                       for l in range(n_layers)]
        self.magnitudes = [stack("m", l).to(device) for l in range(n_layers)]
        self.masks = []
        for l in range(n_layers):  # nested: the +1 set for q < q' lies inside the one for q'
            keys = stack("keys", l)
            agree = keys.argsort(-1).argsort(-1) < torch.round(self.q[:, None] * keys.shape[-1])
            random = torch.tensor([v.feedback == "random" for v in variants])[:, None]  # cpu: mask
            signs = torch.where(random, stack("r", l).flatten(1), torch.where(agree, 1.0, -1.0))
            self.masks.append(signs.reshape(self.weights[l].shape).to(device, dtype))
        hidden, m = widths[1:-1], len(self.bn_idx)  # batch-norm state for bn models only
        self.gammas = [torch.ones(m, 1, h, dtype=dtype, device=device).requires_grad_()
                       for h in hidden]
        self.betas = [torch.zeros(m, 1, h, dtype=dtype, device=device).requires_grad_()
                      for h in hidden]
        self.running = [[torch.zeros(m, 1, h, dtype=dtype, device=device),
                          torch.ones(m, 1, h, dtype=dtype, device=device)]
                        for h in hidden]
        order = sorted(range(len(variants)), key=lambda i: variants[i].feedback)
        self.inverse = torch.tensor(order, device=device).argsort()
        names = [variants[i].feedback for i in order]  # contiguous groups of one feedback
        self.groups = [(name, torch.tensor([i for i in order if variants[i].feedback == name],
                                           device=device)) for name in dict.fromkeys(names)]
        self.redraw = torch.tensor([i for i, v in enumerate(variants)
                                    if v.feedback == "batch_random_sign"], dtype=torch.long,
                                   device=device)

    def _draw(self, seed: int, dtype: torch.dtype) -> dict[str, list[torch.Tensor]]:
        gen = torch.Generator().manual_seed(seed)  # cpu: same initial weights on every device
        out: dict[str, list[torch.Tensor]] = {k: [] for k in ("w", "b", "m", "keys", "r")}
        for a, b in zip(self.widths[:-1], self.widths[1:], strict=True):
            bound = 1 / math.sqrt(a)  # nn.Linear's default initialisation
            w = torch.rand(b, a, generator=gen)  # cpu: moved in __init__
            out["w"].append(((w * 2 - 1) * bound).to(dtype))
            bias = torch.rand(b, generator=gen)  # cpu: moved in __init__
            out["b"].append(((bias * 2 - 1) * bound).to(dtype))
            out["m"].append(random_magnitudes((b, a), generator=gen, dtype=dtype))
            out["keys"].append(torch.rand(b * a, generator=gen))  # cpu: moved in __init__
            out["r"].append(concordance_mask((b, a), 0.5, generator=gen, dtype=dtype))
        return out

    def parameters(self) -> list[torch.Tensor]:
        """Every trained tensor (weights, biases, batch-norm γ and β)."""
        bn = [*self.gammas, *self.betas] if len(self.bn_idx) else []
        return [*self.weights, *self.biases, *bn]

    def feedback_matrices(self, *, true_gradient: bool = False) -> list[torch.Tensor]:
        """V for every layer, (M, out, in); ``true_gradient=True`` gives V = W for all."""
        if true_gradient:
            return [w.detach() for w in self.weights]
        out = []
        for w, s, mag in zip(self.weights, self.masks, self.magnitudes, strict=True):
            parts = [feedback_matrix(w[idx], name, sign_mask=s[idx], magnitude=mag[idx],
                                     scale=self.scale) for name, idx in self.groups]
            out.append(torch.cat(parts)[self.inverse])
        return out

    def redraw_magnitudes(self, generator: torch.Generator) -> None:
        """New magnitudes M for the ``batch_random_sign`` models (called once per batch)."""
        if len(self.redraw):
            for i, mag in enumerate(self.magnitudes):
                fresh = random_magnitudes((len(self.redraw), *mag.shape[1:]),
                                          generator=generator, dtype=mag.dtype,
                                          device=mag.device)
                self.magnitudes[i] = mag.index_copy(0, self.redraw, fresh)

    def forward(self, x: torch.Tensor, *, training: bool = True,
                true_gradient: bool = False) -> torch.Tensor:
        """Logits (M, n, k) for inputs (M, n, d)."""
        vs = self.feedback_matrices(true_gradient=true_gradient)
        h = x
        for l, (w, b, v) in enumerate(zip(self.weights, self.biases, vs, strict=True)):
            z = feedback_matmul(h, w, v) + b  # (M, n, out)
            if l == len(self.weights) - 1:
                return z
            if len(self.bn_idx):  # normalise only the batch-norm models
                zn = _batch_norm(z[self.bn_idx], self.gammas[l], self.betas[l],
                                 self.running[l], training)
                z = z.index_copy(0, self.bn_idx, zn)
            h = torch.relu(z)
        raise AssertionError("unreachable")

    def loss(self, x: torch.Tensor, y: torch.Tensor, **kwargs) -> torch.Tensor:
        """Per-model mean cross-entropy, shape (M,), for x (M, n, d), y (M, n)."""
        logits = self.forward(x, **kwargs)
        ce = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none")
        return ce.view(y.shape).mean(1)

    @torch.no_grad()
    def step(self, grads: Sequence[torch.Tensor], lr: torch.Tensor) -> None:
        """θ ← θ − η g (rules ``sgd``, ``bn``) or θ ← θ − η sign(g) (rule ``bm``); ``lr`` (M,)."""
        eta = lr.reshape(-1, 1, 1).to(self.weights[0].dtype)
        n_layer = 2 * len(self.weights)  # weights and biases: every model, any rule
        for p, g in zip(self.parameters()[:n_layer], grads[:n_layer], strict=True):
            p.sub_(eta * torch.where(self.manhattan, torch.sign(g), g))
        for p, g in zip(self.parameters()[n_layer:], grads[n_layer:], strict=True):
            p.sub_(eta[self.bn_idx] * g)  # batch-norm γ, β: only "bn" models have them


def _angle(a: list[torch.Tensor], b: list[torch.Tensor]) -> torch.Tensor:
    fa = torch.cat([t.flatten(1) for t in a], 1).double()  # float64: arccos near 1
    fb = torch.cat([t.flatten(1) for t in b], 1).double()
    cos = F.cosine_similarity(fa, fb, dim=1).clamp(-1, 1)
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
    net = BatchedFeedbackMLP([x_train.shape[1], *hidden, k], variants, scale=scale,
                             dtype=x_train.dtype, device=x_train.device)  # validates
    eta = torch.tensor([v.lr if v.lr is not None else lr[v.rule] for v in variants],
                       device=x_train.device)
    if not (eta > 0).all():
        raise ValueError("every Variant.lr must be positive")
    m, n = len(variants), len(x_train)
    seeds = sorted({v.seed for v in variants})
    pos = torch.tensor([seeds.index(v.seed) for v in variants])  # cpu: indexes CPU draws
    # cpu: CPU generators keep the minibatches identical on every device
    batch_gens = [torch.Generator().manual_seed(10_007 * s + 1) for s in seeds]  # cpu: see above
    gen = torch.Generator().manual_seed(seed)  # cpu: see above
    probe = torch.randperm(n, generator=gen)[: min(n, probe_size)]  # cpu: moved below
    probe = probe.to(x_train.device)
    xp, yp = x_train[probe].expand(m, -1, -1), y_train[probe].expand(m, -1)
    eval_at = set(np.unique(np.linspace(0, steps, n_evals + 1).round().astype(int)[1:]))
    acc, loss_curve, angle, at = [], [], [], []
    for t in range(1, steps + 1):
        idx = torch.stack([torch.randint(n, (batch_size,), generator=g)  # cpu: moved below
                           for g in batch_gens])
        idx = idx[pos].to(x_train.device)  # (M, b)
        net.redraw_magnitudes(gen)
        loss = net.loss(x_train[idx], y_train[idx])
        grads = torch.autograd.grad(loss.sum(), net.parameters())
        net.step(grads, eta)
        if t in eval_at:
            at.append(t)
            if angles:
                probe_loss, probe_angle = _gradient_angle(net, xp, yp)
            else:  # the loss alone: one forward pass, no gradients
                saved = [[r.clone() for r in pair] for pair in net.running]
                with torch.no_grad():
                    probe_loss = net.loss(xp, yp).double()
                net.running = saved
                probe_angle = torch.full_like(probe_loss, math.nan)
            angle.append(probe_angle)
            loss_curve.append(probe_loss)
            with torch.no_grad():
                logits = net.forward(x_test.expand(m, -1, -1), training=False)
                ok = (logits.argmax(-1) == y_test) & torch.isfinite(logits).all(-1)
                acc.append(ok.double().mean(1))
    as_np = lambda rows: torch.stack(rows, 1).cpu().numpy()  # noqa: E731
    return GridResult(list(variants), np.asarray(at), as_np(acc), as_np(loss_curve),
                      as_np(angle))


def _gradient_angle(net: BatchedFeedbackMLP, x: torch.Tensor,
                    y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Probe-batch loss (M,) and the angle (degrees) between the hidden weights' gradient
    computed with the feedback and the true gradient (V = W)."""
    saved = [[r.clone() for r in pair] for pair in net.running]  # probe must not move BN stats
    hidden_w = net.weights[:-1]
    loss = net.loss(x, y)
    g_fb = torch.autograd.grad(loss.sum(), hidden_w)
    g_true = torch.autograd.grad(net.loss(x, y, true_gradient=True).sum(), hidden_w)
    net.running = saved
    return loss.detach().double(), _angle(list(g_fb), list(g_true)).double()
