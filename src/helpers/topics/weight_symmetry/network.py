"""M small MLPs with asymmetric feedback, stacked along a leading model dimension.

Each model m is an MLP ``widths[0] → … → widths[-1]`` (ReLU) with its own feedback variant,
concordance q, update rule and seed; weights are stacked as ``(M, out, in)``, biases as
``(M, 1, out)``. The inherited
:meth:`~helpers.topics.weight_symmetry.hand_written.HandWrittenPass.loss_and_grads` is the
hand-written pass that trains them (batched matmuls, the error sent down through each model's V,
every intermediate in a reused buffer; :mod:`helpers.topics.weight_symmetry.hand_written`);
:meth:`BatchedFeedbackMLP.loss` is the same network for autograd,
through :func:`helpers.topics.weight_symmetry.feedback.feedback_matmul`, and its oracle in the
unit tests. Update rules (Liao, Leibo & Poggio 2016):

* ``"sgd"``: θ ← θ − η g;
* ``"bn"``: batch normalisation (learned γ, β) after every hidden linear layer, θ ← θ − η g;
* ``"bm"``: Batch Manhattan, θ ← θ − η_BM sign(g), no normalisation.

Introduced in the chapter "How important is weight symmetry in backpropagation?"; the grid
that trains many of them lives in :mod:`helpers.topics.weight_symmetry.training`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from helpers.core.validation import check_choice, check_ints
from helpers.topics.weight_symmetry.feedback import (
    check_feedback,
    concordance_mask,
    feedback_matmul,
    inverse_permutation,
    random_magnitudes,
)
from helpers.topics.weight_symmetry.hand_written import HandWrittenPass

RULES = ("sgd", "bn", "bm")


@dataclass(frozen=True)
class Variant:
    """One model of the grid: feedback name, concordance q (None: default), update rule, seed,
    and step size (None: the rule's default in ``train_feedback_grid``)."""

    feedback: str
    q: float | None
    rule: str
    seed: int
    lr: float | None = None


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


def _thin_first(w: torch.Tensor) -> torch.Tensor:
    """``w`` (M, out, in), stored as (M, in, out) when in < out: then x Wᵀ and its gradient
    hᵀe are plain products of contiguous matrices, the same sums as with W stored row by row
    but faster for a thin input (wine's 13 features, breast cancer's 30, into 32 units)."""
    return w.transpose(1, 2).contiguous().transpose(1, 2) if w.shape[2] < w.shape[1] else w


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


class BatchedFeedbackMLP(HandWrittenPass):
    """M MLPs with asymmetric feedback, stacked: weights ``(M, out, in)``, biases ``(M, 1, out)``.

    Models with the same seed share their initial weights, concordance keys and magnitudes.

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
        self.weights = [_thin_first(stack("w", l).to(device)).requires_grad_()
                        for l in range(n_layers)]
        self.biases = [stack("b", l)[:, None, :].to(device).requires_grad_()
                       for l in range(n_layers)]
        self.magnitudes = [stack("m", l).to(device) for l in range(n_layers)]
        self.masks = []
        for l in range(n_layers):  # nested: the +1 set for q < q' lies inside the one for q'
            keys = torch.stack([d["keys"][l] for d in draws])  # (seeds, out·in)
            ranks = inverse_permutation(keys.argsort(-1))[pos]  # ranked once per seed
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
        self.bm_rows = _as_slice([i for i, v in enumerate(variants) if v.rule == "bm"])
        self.grad_rows = _as_slice([i for i, v in enumerate(variants) if v.rule != "bm"])
        self._coefficients = [self._feedback_coefficients(l) for l in range(n_layers)]
        kinds = {"backprop": ("backprop",), "random": ("random",),
                 "signs": ("sign", "fixed_random_sign", "batch_random_sign")}
        self.feedback_runs = {k: _runs([i for i, v in enumerate(variants) if v.feedback in names])
                              for k, names in kinds.items()}  # V's form: α W, A sign(W) or B
        # buffers reused at every step: V of the layers above the first, the gradients
        self._v = [None, *(self.feedback_matrix(l) for l in range(1, n_layers))]
        self._v_views = [None] * n_layers  # made by _refresh_feedback
        self._plan = None  # the row views of step(), made by _step_plan
        self._grads = [torch.empty_like(p.detach()) for p in self.parameters(bn=True)]
        self._work = {}  # activations and errors per batch size (hand_written._Workspace)
        self._sign = [torch.empty_like(g[self.bm_rows]) for g in self._grads[:2 * n_layers]]
        self._draws = [torch.empty((len(self.redraw), *w.shape[1:]))  # cpu: CPU generator
                       for w in self.weights]  # batch-random magnitudes, redrawn per batch
        self._redraw_masks = [mask[self.redraw] for mask in self.masks]

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

    def parameters(self, *, bn: bool | None = None) -> list[torch.Tensor]:
        """Every trained tensor: weights, biases, then batch-norm γ and β (``bn=None``: only
        when some model uses batch norm)."""
        bn = len(self.bn_idx) > 0 if bn is None else bn
        return [*self.weights, *self.biases, *((*self.gammas, *self.betas) if bn else ())]

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
            torch.sign(w[r], out=v[r]).mul_(a[r])
        for r in self.feedback_runs["random"]:
            v[r] = b[r]
        return v

    def _refresh_feedback(self, l: int) -> torch.Tensor:
        """``feedback_matrix(l)`` in its buffer, rewriting only the rows that depend on W
        (random feedback's B is constant), through row views made once."""
        if self._v_views[l] is None:
            alpha, a, _ = self._coefficients[l]
            w, v = self.weights[l].detach(), self._v[l]
            self._v_views[l] = ([(alpha[r], w[r], v[r]) for r in self.feedback_runs["backprop"]],
                                [(a[r], w[r], v[r]) for r in self.feedback_runs["signs"]])
        backprop, signs = self._v_views[l]
        for alpha, w, v in backprop:
            torch.mul(alpha, w, out=v)
        for a, w, v in signs:  # a is redrawn in place for batch_random_sign: views stay valid
            torch.sign(w, out=v).mul_(a)
        return self._v[l]

    def redraw_magnitudes(self, generator: torch.Generator) -> None:
        """New magnitudes M for the ``batch_random_sign`` models (called once per batch).

        The first layer's are left alone: its V would only send an error to the input, which
        nothing uses.
        """
        if len(self.redraw):
            for l in range(1, len(self.weights)):
                mag, a = self.magnitudes[l], self._coefficients[l][1]
                draw = self._draws[l]  # |N(0, 1)| as random_magnitudes draws it, into a buffer
                torch.randn(draw.shape, generator=generator, out=draw).abs_()  # cpu: see below
                fresh = draw.to(mag)  # the same draws on every device; a no-op on the CPU
                mag.index_copy_(0, self.redraw, fresh)
                torch.mul(fresh, self.scale, out=fresh)
                a.index_copy_(0, self.redraw, fresh.mul_(self._redraw_masks[l]))

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
        if all(g is own for g, own in zip(grads, self._grads, strict=False)) and \
                all(isinstance(r, slice) or not r for r in (self.grad_rows, self.bm_rows)):
            lr_views, bn_views = self._step_plan(lr)  # the training loop: views made once
            for p, g, eta, sign in lr_views:
                p.addcmul_(eta, g if sign is None else torch.sign(g, out=sign), value=-1)
            for p, g, eta in bn_views[:len(grads) - len(self.weights) * 2]:
                p.sub_(eta * g)
            return
        eta = lr.reshape(-1, 1, 1).to(self.weights[0].dtype)
        n_layer = 2 * len(self.weights)  # weights and biases: every model, any rule
        for p, g, sign in zip(self.parameters()[:n_layer], grads[:n_layer], self._sign,
                              strict=True):
            for rows, d in ((self.grad_rows, None), (self.bm_rows, sign)):
                if rows:
                    d = g[rows] if d is None else torch.sign(g[rows], out=sign)
                    part = p[rows].addcmul_(eta[rows], d, value=-1)  # a view when rows is a slice
                    if not isinstance(rows, slice):
                        p[rows] = part
        for p, g in zip(self.parameters()[n_layer:], grads[n_layer:], strict=True):
            p.sub_(eta[self.bn_idx] * g)  # batch-norm γ, β: only "bn" models have them

    def _step_plan(self, lr: torch.Tensor) -> tuple[list[tuple], list[tuple]]:
        """For ``step`` on the network's own gradient buffers: (parameter rows, gradient rows,
        η rows, sign buffer or None) of every weight and bias and (γ or β, gradient, η) of
        the batch-norm models, made once per ``lr`` tensor."""
        if self._plan is None or self._plan[0] is not lr:
            eta = lr.reshape(-1, 1, 1).to(self.weights[0].dtype)
            n_layer = 2 * len(self.weights)
            params, grads = self.parameters(bn=True), self._grads
            lr_views = []
            for p, g, sign in zip(params[:n_layer], grads[:n_layer], self._sign, strict=True):
                if self.grad_rows:
                    lr_views.append((p[self.grad_rows], g[self.grad_rows],
                                     eta[self.grad_rows], None))
                if self.bm_rows:
                    lr_views.append((p[self.bm_rows], g[self.bm_rows], eta[self.bm_rows], sign))
            eta_bn = eta[self.bn_idx]
            bn_views = [(p, g, eta_bn) for p, g in zip(params[n_layer:], grads[n_layer:],
                                                          strict=True)]
            self._plan = (lr, lr_views, bn_views)
        return self._plan[1:]
