"""The hand-written training pass of
:class:`~helpers.topics.weight_symmetry.network.BatchedFeedbackMLP`: forward in training or
evaluation mode and backward through each model's feedback matrices V, every intermediate in a
buffer that is allocated once per batch size.

Fresh tensors of a few megabytes at every step cost page faults that, on a loaded machine, take
longer than the arithmetic; reusing buffers avoids them. The numbers are those of the autograd
path ``BatchedFeedbackMLP.loss`` (a unit test checks it in float64). Introduced in the chapter
"How important is weight symmetry in backpropagation?".
"""

from __future__ import annotations

import torch


class HandWrittenPass:
    """Mixin of :class:`~helpers.topics.weight_symmetry.network.BatchedFeedbackMLP`: the
    training pass without an autograd graph. Uses the network's ``weights``, ``biases``,
    ``gammas``, ``betas``, ``running``, ``bn_rows``, ``_refresh_feedback`` and the buffers
    ``_grads``, ``_v`` and ``_work`` that its constructor allocates."""

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
        The gradients are buffers of the network, overwritten by the next call (as ``.grad``).
        """
        loss, e = self._forward_train(x, y)
        return loss, self._backward(e, true_gradient=true_gradient)

    def _workspace(self, n: int) -> _Workspace:
        """The buffers for batch size n, allocated on first use and kept."""
        if n not in self._work:
            self._work[n] = _Workspace(len(self.variants), n, self.widths, len(self.bn_idx),
                                       self.weights[0].dtype, self.device)
        return self._work[n]

    @torch.no_grad()
    def _forward_train(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor,
                                                                        torch.Tensor]:
        """Forward pass in training mode into the workspace of batch size n = x.shape[1];
        returns the loss (M,) and the error at the logits, e_L = (softmax − onehot)/n."""
        ws = self._workspace(x.shape[1])
        ws.x = h = x
        for l in range(len(self.weights) - 1):
            z = torch.baddbmm(self.biases[l], h, self.weights[l].transpose(1, 2), out=ws.h[l])
            if len(self.bn_idx):
                self._batch_norm_forward(z, l, ws.bn[l])
            h = z.clamp_min_(0)  # ReLU in place: z is not needed again
        logp = torch.baddbmm(self.biases[-1], h, self.weights[-1].transpose(1, 2),
                             out=ws.logits)
        logp -= logp.amax(-1, keepdim=True)  # (M, n, k) log-softmax by hand: the
        logp -= logp.exp().sum(-1, keepdim=True).log_()  # library's is slow for k = 2 or 3
        loss = -logp.gather(-1, y[..., None]).squeeze(-1).mean(1)
        e = logp.exp_().scatter_add_(-1, y[..., None], -torch.ones_like(logp[..., :1]))
        return loss, e.div_(y.shape[1])  # ∂(mean cross-entropy)/∂logits

    @torch.no_grad()
    def _forward_eval(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (M, n, k) in evaluation mode (running statistics), as ``forward(x,
        training=False)`` but into the workspace of batch size n (overwritten by the next
        call)."""
        ws = self._workspace(x.shape[1])
        h = x
        for l in range(len(self.weights) - 1):
            z = torch.baddbmm(self.biases[l], h, self.weights[l].transpose(1, 2), out=ws.h[l])
            if len(self.bn_idx):  # (z − μ)/√(σ² + ε)·γ + β with the running statistics
                zb = z[self.bn_rows]
                mean, var = self.running[l]
                zb = zb.sub_(mean).div_(torch.sqrt(var + 1e-5)).mul_(self.gammas[l])
                zb.add_(self.betas[l])
                if not isinstance(self.bn_rows, slice):
                    z[self.bn_rows] = zb
            h = z.clamp_min_(0)
        return torch.baddbmm(self.biases[-1], h, self.weights[-1].transpose(1, 2),
                             out=ws.logits)

    @torch.no_grad()
    def _backward(self, e: torch.Tensor, *, true_gradient: bool = False) -> list[torch.Tensor]:
        """Gradients of every parameter from the error ``e`` at the logits, through the
        activations that :meth:`_forward_train` left in the workspace."""
        ws = self._workspace(e.shape[1])
        n_layers = len(self.weights)
        g_w, g_b, g_bn = (self._grads[:n_layers], self._grads[n_layers:2 * n_layers],
                          self._grads[2 * n_layers:])
        g_gamma, g_beta = g_bn[:n_layers - 1], g_bn[n_layers - 1:]
        for l in reversed(range(n_layers)):
            h = ws.h[l - 1] if l else ws.x
            if not g_w[l].is_contiguous():  # stored transposed, as W (see _thin_first)
                torch.bmm(h.transpose(1, 2), e, out=g_w[l].transpose(1, 2))
            else:
                torch.bmm(e.transpose(1, 2), h, out=g_w[l])  # (M, out, in)
            torch.sum(e, 1, keepdim=True, out=g_b[l])
            if l == 0:
                break
            v = self.weights[l] if true_gradient else self._refresh_feedback(l)
            e = torch.bmm(e, v, out=ws.e[l - 1])
            torch.ops.aten.threshold_backward.grad_input(e, h, 0, grad_input=e)  # ReLU'
            if len(self.bn_idx):
                self._batch_norm_backward(e, ws.bn[l - 1], l - 1, g_gamma[l - 1], g_beta[l - 1])
        return self._grads if len(self.bn_idx) else self._grads[:2 * n_layers]

    def _batch_norm_forward(self, z: torch.Tensor, l: int, cache: list[torch.Tensor],
                            momentum: float = 0.1, eps: float = 1e-5) -> None:
        """Normalise the bn models' rows of z in place (as ``_batch_norm`` in training mode);
        keep (x̂, 1/σ) in ``cache`` for the backward pass (its last two tensors are scratch)."""
        zb = z[self.bn_rows]
        mean = zb.mean(1, keepdim=True)
        xhat = torch.sub(zb, mean, out=cache[0])
        var = torch.mul(xhat, xhat, out=cache[2]).mean(1, keepdim=True)
        self.running[l][0].lerp_(mean, momentum)
        self.running[l][1].lerp_(var, momentum)
        inv_std = torch.add(var, eps, out=cache[1]).rsqrt_()
        xhat.mul_(inv_std)
        if isinstance(self.bn_rows, slice):
            torch.addcmul(self.betas[l], xhat, self.gammas[l], out=zb)
        else:
            z[self.bn_rows] = torch.addcmul(self.betas[l], xhat, self.gammas[l])

    def _batch_norm_backward(self, e: torch.Tensor, cache: list[torch.Tensor], l: int,
                             g_gamma: torch.Tensor, g_beta: torch.Tensor) -> None:
        """Through y = γ x̂ + β, x̂ = (z − μ)/σ over the batch: in place on the bn rows of e,
        ∂z = (1/σ)(∂x̂ − mean ∂x̂ − x̂ mean(∂x̂ x̂)) with ∂x̂ = γ ∂y; (∂γ, ∂β) into the buffers."""
        xhat, inv_std, scratch, dx = cache
        eb = e[self.bn_rows]
        torch.sum(eb, 1, keepdim=True, out=g_beta)
        torch.sum(torch.mul(eb, xhat, out=scratch), 1, keepdim=True, out=g_gamma)
        torch.mul(eb, self.gammas[l], out=dx)
        proj = torch.mul(dx, xhat, out=scratch).mean(1, keepdim=True)
        dz = torch.sub(dx, dx.mean(1, keepdim=True), out=eb)  # eb is no longer needed
        dz.sub_(torch.mul(xhat, proj, out=scratch)).mul_(inv_std)
        if not isinstance(self.bn_rows, slice):  # eb was a copy
            e[self.bn_rows] = dz


class _Workspace:
    """Buffers of one batch size n: activations ``h`` (M, n, h_l) and logits; for training also
    the errors ``e`` (M, n, h_l) below each hidden layer and batch norm's (x̂, 1/σ, scratch,
    scratch)."""

    def __init__(self, m: int, n: int, widths: list[int], m_bn: int, dtype: torch.dtype,
                 device: torch.device):
        self._empty = lambda *shape: torch.empty(shape, dtype=dtype, device=device)  # noqa: E731
        self.m, self.n, self.widths, self.m_bn = m, n, widths, m_bn
        self.x = None
        self.h = [self._empty(m, n, w) for w in widths[1:-1]]
        self.logits = self._empty(m, n, widths[-1])
        self._e = self._bn = None

    @property
    def e(self) -> list[torch.Tensor]:
        if self._e is None:
            self._e = [self._empty(self.m, self.n, w) for w in self.widths[1:-1]]
        return self._e

    @property
    def bn(self) -> list[list[torch.Tensor]]:
        if self._bn is None:
            self._bn = [[self._empty(self.m_bn, self.n, w), self._empty(self.m_bn, 1, w),
                         self._empty(self.m_bn, self.n, w), self._empty(self.m_bn, self.n, w)]
                        for w in self.widths[1:-1]]
        return self._bn
