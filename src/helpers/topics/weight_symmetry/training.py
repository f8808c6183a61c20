"""Train many small asymmetric-feedback MLPs at once: one batched run per data set.

Each model m is an MLP ``widths[0] → … → widths[-1]`` (ReLU) trained with its own feedback
variant, concordance q, update rule and seed; all of them share one Python loop, their weights
stacked along a leading model dimension (``(M, out, in)``). Training uses the hand-written
pass :meth:`BatchedFeedbackMLP.loss_and_grads` (batched matmuls, the error sent down through
each model's V); :meth:`BatchedFeedbackMLP.loss` is the same network for autograd, through
:func:`helpers.topics.weight_symmetry.feedback.feedback_matmul`, and its oracle in the unit
tests. Update rules (Liao, Leibo & Poggio 2016):

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


def _as_slice(idx: list[int]) -> slice | list[int]:
    """``idx`` as a slice when it is a run of consecutive integers (views, no gather), else
    unchanged."""
    if idx and idx == list(range(idx[0], idx[0] + len(idx))):
        return slice(idx[0], idx[0] + len(idx))
    return idx


def _runs(idx: list[int]) -> list[slice]:
    """``idx`` (increasing) as its runs of consecutive integers, each a slice."""
    starts = [i for k, i in enumerate(idx) if k == 0 or idx[k - 1] != i - 1]
    ends = [i + 1 for k, i in enumerate(idx) if k == len(idx) - 1 or idx[k + 1] != i + 1]
    return [slice(a, b) for a, b in zip(starts, ends, strict=True)]


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
            keys = torch.stack([d["keys"][l] for d in draws])  # (seeds, out·in)
            ranks = keys.argsort(-1).argsort(-1)[pos]  # ranked once per seed, not per model
            agree = ranks < torch.round(self.q[:, None] * keys.shape[-1])
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
        self.redraw = torch.tensor([i for i, v in enumerate(variants)
                                    if v.feedback == "batch_random_sign"], dtype=torch.long,
                                   device=device)
        self.bn_rows = _as_slice(self.bn_idx.tolist())  # a view when the bn models are a run
        self.rule_rows = {r: _as_slice([i for i, v in enumerate(variants) if v.rule == r])
                          for r in RULES}
        self._coefficients = [self._feedback_coefficients(l) for l in range(n_layers)]
        kinds = {"backprop": ("backprop",), "random": ("random",),
                 "signs": ("sign", "fixed_random_sign", "batch_random_sign")}
        self.feedback_runs = {k: _runs([i for i, v in enumerate(variants) if v.feedback in names])
                              for k, names in kinds.items()}  # V's form: α W, A sign(W) or B

    def _feedback_coefficients(self, l: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(α, A, B) of layer l with V = α ∘ W + A ∘ sign(W) + B for every model at once.

        backprop: α = S; sign: A = scale·S; fixed/batch random-magnitude: A = scale·M∘S;
        random: B = scale·M∘R (the other two zero in each case).
        """
        s, mag = self.masks[l], self.magnitudes[l]
        kind = lambda *names: torch.tensor([v.feedback in names for v in self.variants],  # noqa: E731
                                           device=self.device)[:, None, None]
        zero = torch.zeros((), dtype=s.dtype, device=self.device)
        alpha = torch.where(kind("backprop"), s, zero)
        a = self.scale * torch.where(kind("sign"), s, torch.where(
            kind("fixed_random_sign", "batch_random_sign"), mag * s, zero))
        b = self.scale * torch.where(kind("random"), mag * s, zero)
        return alpha, a, b

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
        return [self.feedback_matrix(l) for l in range(len(self.weights))]

    def feedback_matrix(self, l: int) -> torch.Tensor:
        """V of layer l, (M, out, in): α ∘ W + A ∘ sign(W) + B (see ``_feedback_coefficients``),
        the table of :mod:`helpers.topics.weight_symmetry.feedback` for every model."""
        alpha, a, b = self._coefficients[l]
        w = self.weights[l].detach()
        v = torch.empty_like(w)
        for r in self.feedback_runs["backprop"]:  # each run of rows at once: views, no gathers
            torch.mul(alpha[r], w[r], out=v[r])
        for r in self.feedback_runs["signs"]:
            torch.mul(a[r], torch.sign(w[r]), out=v[r])
        for r in self.feedback_runs["random"]:
            v[r] = b[r]
        return v

    def redraw_magnitudes(self, generator: torch.Generator) -> None:
        """New magnitudes M for the ``batch_random_sign`` models (called once per batch).

        The first layer's are left alone: its V would only send an error to the input, which
        nothing uses.
        """
        if len(self.redraw):
            for l in range(1, len(self.weights)):
                mag, a = self.magnitudes[l], self._coefficients[l][1]
                fresh = random_magnitudes((len(self.redraw), *mag.shape[1:]),
                                          generator=generator, dtype=mag.dtype,
                                          device=mag.device)
                mag.index_copy_(0, self.redraw, fresh)
                a.index_copy_(0, self.redraw, self.scale * fresh * self.masks[l][self.redraw])

    def forward(self, x: torch.Tensor, *, training: bool = True,
                true_gradient: bool = False) -> torch.Tensor:
        """Logits (M, n, k) for inputs (M, n, d)."""
        if torch.is_grad_enabled():
            vs = self.feedback_matrices(true_gradient=true_gradient)
        else:  # no backward pass: V plays no part
            vs = [None] * len(self.weights)
        h = x
        for l, (w, b, v) in enumerate(zip(self.weights, self.biases, vs, strict=True)):
            if v is None:
                z = torch.baddbmm(b, h, w.transpose(1, 2))  # (M, n, out)
            else:
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
            for rule, rows in self.rule_rows.items():
                if rows:
                    d = torch.sign(g[rows]) if rule == "bm" else g[rows]
                    part = p[rows].addcmul_(eta[rows], d, value=-1)  # a view when rows is a slice
                    if not isinstance(rows, slice):
                        p[rows] = part
        for p, g in zip(self.parameters()[n_layer:], grads[n_layer:], strict=True):
            p.sub_(eta[self.bn_idx] * g)  # batch-norm γ, β: only "bn" models have them

    @torch.no_grad()
    def loss_and_grads(self, x: torch.Tensor, y: torch.Tensor, *,
                       true_gradient: bool = False
                       ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Per-model loss (M,) and the gradient of its sum with respect to ``parameters()``,
        by a hand-written backward pass (training mode: batch statistics, running ones updated).

        The same numbers as ``autograd.grad(self.loss(x, y).sum(), self.parameters())`` (a unit
        test checks it in float64) without the autograd graph: with e_L = (softmax − onehot)/n
        at the logits, ∂W_l = e_lᵀ h_{l−1}, ∂b_l = Σ_n e_l, and the error below layer l is
        e_l V_l (V_l = W_l for backprop), masked by the ReLU and passed through batch
        normalisation's backward (``_batch_norm_backward``). The input's error is never formed.
        """
        n_layers = len(self.weights)
        hs, caches = [x], []
        for l in range(n_layers - 1):
            z = torch.baddbmm(self.biases[l], hs[-1], self.weights[l].transpose(1, 2))
            if len(self.bn_idx):
                caches.append(self._batch_norm_forward(z, l))
            hs.append(z.clamp_min_(0))  # ReLU in place: z is not needed again
        logits = torch.baddbmm(self.biases[-1], hs[-1], self.weights[-1].transpose(1, 2))
        logp = logits - logits.amax(-1, keepdim=True)  # (M, n, k) log-softmax by hand: the
        logp -= logp.exp().sum(-1, keepdim=True).log_()  # library's is slow for k = 2 or 3
        loss = -logp.gather(-1, y[..., None]).squeeze(-1).mean(1)
        e = logp.exp_().scatter_add_(-1, y[..., None], -torch.ones_like(logp[..., :1]))
        e /= y.shape[1]  # ∂(mean cross-entropy)/∂logits
        g_w, g_b, g_gamma, g_beta = [None] * n_layers, [None] * n_layers, [], []
        for l in reversed(range(n_layers)):
            g_w[l] = e.transpose(1, 2) @ hs[l]  # (M, out, in)
            g_b[l] = e.sum(1, keepdim=True)
            if l == 0:
                break
            v = self.weights[l] if true_gradient else self.feedback_matrix(l)
            e = torch.ops.aten.threshold_backward(e @ v, hs[l], 0)  # ReLU': e where h > 0
            if len(self.bn_idx):
                gg, gb = self._batch_norm_backward(e, caches[l - 1], l - 1)
                g_gamma.insert(0, gg)
                g_beta.insert(0, gb)
        bn = [*g_gamma, *g_beta] if len(self.bn_idx) else []
        return loss, [*g_w, *g_b, *bn]

    def _batch_norm_forward(self, z: torch.Tensor, l: int, momentum: float = 0.1,
                            eps: float = 1e-5) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalise the bn models' rows of z in place (as ``_batch_norm`` in training mode);
        return (x̂, 1/σ) for the backward pass."""
        zb = z[self.bn_rows]
        mean = zb.mean(1, keepdim=True)
        var = (zb - mean).square_().mean(1, keepdim=True)
        self.running[l][0].lerp_(mean, momentum)
        self.running[l][1].lerp_(var, momentum)
        inv_std = (var + eps).rsqrt_()
        xhat = (zb - mean).mul_(inv_std)
        z[self.bn_rows] = torch.addcmul(self.betas[l], xhat, self.gammas[l])
        return xhat, inv_std

    def _batch_norm_backward(self, e: torch.Tensor, cache: tuple[torch.Tensor, torch.Tensor],
                             l: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Through y = γ x̂ + β, x̂ = (z − μ)/σ over the batch: in place on the bn rows of e,
        ∂z = (1/σ)(∂x̂ − mean ∂x̂ − x̂ mean(∂x̂ x̂)) with ∂x̂ = γ ∂y; returns (∂γ, ∂β)."""
        xhat, inv_std = cache
        eb = e[self.bn_rows]
        g_beta = eb.sum(1, keepdim=True)
        g_gamma = (eb * xhat).sum(1, keepdim=True)
        dx = eb * self.gammas[l]
        proj = (dx * xhat).mean(1, keepdim=True)
        e[self.bn_rows] = (dx - dx.mean(1, keepdim=True)).sub_(xhat * proj).mul_(inv_std)
        return g_gamma, g_beta


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
    for v in variants:
        check_choice("rule", v.rule, RULES)
    order = sorted(range(len(variants)), key=lambda i: (RULES.index(variants[i].rule),
                                                        variants[i].feedback))
    variants = [variants[i] for i in order]  # runs of one rule and feedback: views, not gathers
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
        _, grads = net.loss_and_grads(x_train[idx], y_train[idx])
        net.step(grads, eta)
        if t in eval_at:
            at.append(t)
            saved = [[r.clone() for r in pair] for pair in net.running]  # the probe must not
            probe_loss, probe_angle = _probe(net, xp, yp, angles)  # move batch-norm statistics
            net.running = saved
            angle.append(probe_angle)
            loss_curve.append(probe_loss)
            with torch.no_grad():
                logits = net.forward(x_test.expand(m, -1, -1), training=False)
                ok = (logits.argmax(-1) == y_test) & torch.isfinite(logits).all(-1)
                acc.append(ok.double().mean(1))
    back = np.argsort(order)  # rows in the caller's order of variants
    as_np = lambda rows: torch.stack(rows, 1).cpu().numpy()[back]  # noqa: E731
    return GridResult([variants[i] for i in back], np.asarray(at), as_np(acc),
                      as_np(loss_curve), as_np(angle))


def _probe(net: BatchedFeedbackMLP, x: torch.Tensor, y: torch.Tensor,
           angles: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Probe-batch loss (M,) and the angle (degrees) between the hidden weights' gradient
    computed with the feedback and the true gradient (V = W); NaN angles if not ``angles``."""
    if not angles:  # the loss alone: one forward pass, no gradients
        with torch.no_grad():
            loss = net.loss(x, y).double()
        return loss, torch.full_like(loss, math.nan)
    hidden = slice(0, len(net.weights) - 1)
    loss, g_fb = net.loss_and_grads(x, y)
    _, g_true = net.loss_and_grads(x, y, true_gradient=True)
    return loss.double(), _angle(g_fb[hidden], g_true[hidden]).double()
