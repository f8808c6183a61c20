"""Normalisation as (operation, statistics, reference set): batch, layer, streaming and Lp.

Liao, Kawaguchi & Poggio (2016), "Streaming Normalization" {liao2016streaming}, describe every
normalisation scheme by three choices: the **operation** N(x, s) = (x − μ)/σ_p, the
**statistics** s = (μ, σ_p) with σ_p = (E|x − μ|^p)^{1/p} (p = 2: standard deviation; p = 1: mean
absolute deviation), and the **reference set** the expectation runs over: the mini-batch (batch
norm), the units of one sample (layer norm), or every sample seen so far, weighted by an
exponential window (streaming norm). Streaming norm uses running statistics in the forward
pass and running ("streaming") estimates of E[g] and E[g·u] in the backward pass, so that the
gradient keeps batch norm's two projection terms without needing a batch.

Introduced in the chapter "Streaming normalisation" (book/depth/streaming_normalisation).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from helpers.core.validation import check_int
from helpers.topics.streaming_normalisation.backprop import fast_forward, fast_grads, norm_spec
from helpers.topics.streaming_normalisation.state import StreamState

KINDS = ("none", "batch", "streaming", "naive")


def _check_p(p: float) -> float:
    if isinstance(p, bool) or not isinstance(p, int | float) or not p >= 1:
        raise ValueError(f"p must be a number >= 1, got {p!r}")
    return float(p)


def lp_stats(x: torch.Tensor, dim: int | tuple[int, ...], p: float = 2.0
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalisation statistics over ``dim``: μ = E[x] and σ_p = (E|x − μ|^p)^{1/p} (keepdim)."""
    p = _check_p(p)
    mu = x.mean(dim, keepdim=True)
    sigma = (x - mu).abs().pow(p).mean(dim, keepdim=True).pow(1 / p)
    return mu, sigma


def normalize(x: torch.Tensor, reference: str = "batch", p: float = 2.0,
              eps: float = 1e-5) -> torch.Tensor:
    """N(x, s) = (x − μ)/(σ_p + eps) with statistics over the reference set.

    Args:
        x: (B, n) activations, B samples by n units.
        reference: ``"batch"`` (each unit over the B samples: batch norm) or ``"layer"``
            (each sample over its n units: layer norm).
        p: order of the statistic σ_p (2: standard deviation, 1: mean absolute deviation).
    """
    if x.dim() != 2:
        raise ValueError(f"x must have shape (B, n), got {tuple(x.shape)}")
    dims = {"batch": 0, "layer": 1}
    if reference not in dims:
        raise ValueError(f"reference must be 'batch' or 'layer', got {reference!r}")
    mu, sigma = lp_stats(x, dims[reference], p)
    return (x - mu) / (sigma + eps)


class _StreamingBackward(torch.autograd.Function):
    """u = (z − μ)/s with μ, s constants forward; backward (g − G − H(φ_p(u) − Φ))/s.

    This is batch norm's exact gradient (g − E g − E[g u](φ_p(u) − E φ_p(u)))/s with the batch
    expectations replaced by running averages that include the current batch.
    """

    @staticmethod
    def forward(ctx, z, mu, s, state, p, rate):  # noqa: ANN001
        u = (z - mu) / s
        ctx.save_for_backward(u, s)
        ctx.state, ctx.p, ctx.rate = state, p, rate
        return u

    @staticmethod
    def backward(ctx, g):  # noqa: ANN001
        u, s = ctx.saved_tensors
        st, p = ctx.state, ctx.p
        st.back_steps += 1
        a = max(ctx.rate, 1.0 / st.back_steps)
        phi = u if p == 2 else u.sign() * u.abs().pow(p - 1)
        st.G.lerp_(g.mean(1, keepdim=True), a)
        st.H.lerp_((g * u).mean(1, keepdim=True), a)
        st.Phi.lerp_(phi.mean(1, keepdim=True), a)
        return (g - st.G - st.H * (phi - st.Phi)) / s, None, None, None, None, None


def streaming_normalize(z: torch.Tensor, state: StreamState, *, p: float = 2.0,
                        rate: float = 0.01, training: bool = True, backward: str = "streaming",
                        eps: float = 1e-5) -> torch.Tensor:
    """Streaming Lp normalisation of z, shape (R, B, n): R models, B samples, n units.

    Training forward: update μ ← μ + a(mean_B z − μ), m_p ← m_p + a(mean_B |z − μ|^p − m_p) with
    a = max(rate, 1/t), then u = (z − μ)/(m_p + eps)^{1/p}. Evaluation uses the frozen statistics.
    ``backward="streaming"`` uses the running gradient estimates (see ``_StreamingBackward``);
    ``backward="naive"`` treats μ and s as constants, g_z = g_u / s, the running-average scheme
    without streaming gradients that the chapter shows failing {liao2016streaming}.
    """
    p = _check_p(p)
    if z.dim() != 3:
        raise ValueError(f"z must have shape (R, B, n), got {tuple(z.shape)}")
    if not 0 < rate <= 1:
        raise ValueError(f"rate must lie in (0, 1], got {rate}")
    if backward not in ("streaming", "naive"):
        raise ValueError(f"backward must be 'streaming' or 'naive', got {backward!r}")
    if training:
        with torch.no_grad():
            state.steps += 1
            a = max(rate, 1.0 / state.steps)
            state.mu.lerp_(z.mean(1, keepdim=True), a)
            state.m_p.lerp_((z - state.mu).abs().pow(p).mean(1, keepdim=True), a)
    s = (state.m_p + eps).pow(1 / p)
    if not training or backward == "naive":
        return (z - state.mu) / s
    return _StreamingBackward.apply(z, state.mu, s, state, p, rate)


@dataclass
class OnlineResult:
    """Outcome of :func:`train_online` for R independent runs.

    Attributes:
        accuracy: (R,) test accuracy at the end.
        seen: samples seen at each checkpoint; curve: (len(seen), R) test accuracy there.
    """

    accuracy: torch.Tensor
    seen: list[int]
    curve: torch.Tensor


def _init_params(widths: list[int], runs: int, gen: torch.Generator, dtype: torch.dtype,
                 device: torch.device | str, steps: int) -> list[dict[str, torch.Tensor]]:
    def he(a: int, b: int, gain: float = 2.0) -> torch.Tensor:
        w = torch.randn(runs, a, b, generator=gen, dtype=dtype) * (gain / a) ** 0.5  # cpu: CPU gen
        return w.to(device).requires_grad_(bool(steps))

    def const(value: float, b: int) -> torch.Tensor:
        return torch.full((runs, 1, b), value, dtype=dtype, device=device,
                          requires_grad=bool(steps))

    if steps:  # recurrent: input chunk → hidden (W), hidden → hidden (V), then readout
        d, n, k = widths
        return [{"W": he(d // steps, n), "V": he(n, n, gain=1.0), "beta": const(0.0, n),
                 "gamma": const(1.0, n)}, {"W": he(n, k), "beta": const(0.0, k)}]
    layers = [{"W": he(a, b), "beta": const(0.0, b), "gamma": const(1.0, b)}
              for a, b in zip(widths[:-2], widths[1:-1], strict=True)]
    return [*layers, {"W": he(widths[-2], widths[-1]), "beta": const(0.0, widths[-1])}]


def _norm(z, st, kind, p, rate, training):  # noqa: ANN001, ANN202
    if kind == "none":
        return z
    if kind == "batch" and training:
        mu = z.mean(1, keepdim=True)
        m_p = (z - mu).abs().pow(p).mean(1, keepdim=True)
        with torch.no_grad():  # running statistics, used only at test time
            st.steps += 1
            st.mu.lerp_(mu, max(rate, 1 / st.steps))
            st.m_p.lerp_(m_p, max(rate, 1 / st.steps))
        return (z - mu) / (m_p + 1e-5).pow(1 / p)
    return streaming_normalize(z, st, p=p, rate=rate, training=training,
                               backward="naive" if kind == "naive" else "streaming")


def _forward(params, states, x, kind, p, rate, training, steps):  # noqa: ANN001, ANN202
    """Autograd forward (the reference implementation, and the recurrent network's)."""
    if steps:  # h_{t+1} = relu(γ N(x_t W + h_t V) + β), one N (one state) for every t
        layer, h = params[0], None
        for x_t in x.chunk(steps, dim=-1):
            z = torch.bmm(x_t, layer["W"]) + (0 if h is None else torch.bmm(h, layer["V"]))
            gamma = layer["gamma"] if kind != "none" else 1.0
            h = torch.relu(gamma * _norm(z, states[0], kind, p, rate, training) + layer["beta"])
    else:
        h = x
        for layer, st in zip(params[:-1], states, strict=True):
            z = torch.bmm(h, layer["W"])  # (R, B, n)
            gamma = layer["gamma"] if kind != "none" else 1.0
            h = torch.relu(gamma * _norm(z, st, kind, p, rate, training) + layer["beta"])
    return torch.bmm(h, params[-1]["W"]) + params[-1]["beta"]  # (R, B, classes)


def _check_kinds(kind: str | list[str] | tuple[str, ...], runs: int) -> list[str]:
    kinds = [kind] * runs if isinstance(kind, str) else list(kind)
    if len(kinds) != runs or any(k not in KINDS for k in kinds):
        raise ValueError(f"kind must be one of {KINDS} or one per run ({runs}), got {kind!r}")
    if "batch" in kinds and len(set(kinds)) > 1:
        raise ValueError(f"kind 'batch' cannot be mixed with other kinds, got {kind!r}")
    return kinds


def _check_p_runs(p: float | list[float] | torch.Tensor, runs: int, dtype: torch.dtype,
                  device: torch.device | str) -> float | torch.Tensor:
    if isinstance(p, int | float) and not isinstance(p, bool):
        return _check_p(p)
    values = [_check_p(v) for v in torch.as_tensor(p).flatten().tolist()]  # cpu: read as floats
    if len(values) != runs:
        raise ValueError(f"p must be one number or one per run ({runs}), got {len(values)}")
    if len(set(values)) == 1:
        return values[0]
    return torch.tensor(values, dtype=dtype, device=device).view(-1, 1, 1)


def train_online(split, *, kind: str | list[str] = "streaming",  # noqa: ANN001
                 p: float | list[float] | torch.Tensor = 2.0,
                 hidden: tuple[int, ...] = (64, 64), eta: float | torch.Tensor = 0.05,
                 passes: int = 1,
                 batch_size: int = 1, runs: int = 4, rate: float = 0.01, seed: int = 0,
                 anneal: bool = True, recurrent_steps: int = 0,
                 checkpoints: int = 0) -> OnlineResult:
    """Online SGD (``batch_size`` samples per step) of R = ``runs`` MLPs at once.

    Each hidden layer computes h = relu(γ·N(hW) + β), N chosen by ``kind``: ``"none"``
    (N(z) = z, γ = 1), ``"batch"`` (batch statistics, exact gradient; running statistics at
    test time), ``"streaming"`` (:func:`streaming_normalize`) or ``"naive"`` (streaming forward,
    statistics treated as constants backward). ``kind`` may also list one kind per run (none,
    naive and streaming mix; batch does not), and ``p`` one order per run, so that several
    variants train as one batched model. The gradient of the feedforward network is written
    out by hand (the same formulas as autograd's, tested against it), which avoids building a
    graph for every one-sample step. With ``recurrent_steps`` = S > 0 the network is
    instead a recurrent one reading each input as S chunks (an 8×8 digit row by row),
    h_{t+1} = relu(γ N(x_t W + h_t V) + β) with one hidden layer ``hidden[0]`` whose
    normalisation statistics are shared over the time steps (one kind and one p, autograd).
    ``eta`` is one step size or one
    per run, decayed linearly to zero over training when ``anneal`` (the usual schedule for SGD
    with one sample per step, whose gradient noise otherwise sets an accuracy floor). Each run
    draws its own initialisation and sample order from ``seed``. ``checkpoints`` > 0 records
    the test accuracy that many times during training.
    Chapter "Streaming normalisation" {liao2016streaming}.
    """
    for name, v in (("passes", passes), ("batch_size", batch_size), ("runs", runs)):
        check_int(name, v, low=1)
    kinds = _check_kinds(kind, runs)
    x, y, dev = split.x_train, split.y_train, split.x_train.device
    p = _check_p_runs(p, runs, x.dtype, dev)
    eta = torch.as_tensor(eta, dtype=x.dtype, device=dev).flatten()
    if not (eta > 0).all() or eta.numel() not in (1, runs):
        raise ValueError(f"eta must be positive, one value or one per run, got {eta.tolist()}")
    eta = eta.expand(runs)
    gen = torch.Generator().manual_seed(seed)  # cpu: same draws on every device
    widths = [x.shape[1], *hidden, split.n_classes]
    if recurrent_steps and (len(hidden) != 1 or x.shape[1] % recurrent_steps
                            or len(set(kinds)) > 1 or not isinstance(p, float)):
        raise ValueError(f"recurrent_steps={recurrent_steps} needs one hidden layer, an input "
                         f"size divisible by it, one kind and one p, got hidden={hidden}, "
                         f"d={x.shape[1]}, kind={kind!r}")
    params = _init_params(widths, runs, gen, x.dtype, dev, recurrent_steps)
    states = [StreamState.zeros(runs, n, x.dtype, dev) for n in hidden]
    steps = passes * (len(x) // batch_size)
    order = torch.cat([torch.stack([torch.randperm(len(x), generator=gen)  # cpu: CPU gen
                                    for _ in range(runs)])[:, :len(x) // batch_size * batch_size]
                       for _ in range(passes)], 1).view(runs, steps, batch_size).to(dev)
    every = max(steps // checkpoints, 1) if checkpoints else 0
    spec = norm_spec(kinds, p, rate, dev)
    trained = [t for layer in params for name, t in layer.items()
               if name != "gamma" or spec.any_norm]
    onehot = torch.nn.functional.one_hot(y, split.n_classes).to(x.dtype)  # (N, classes)
    frac = (torch.arange(steps, dtype=torch.float64, device=dev) / steps if anneal
            else torch.zeros(steps, dtype=torch.float64, device=dev))
    # −η_r (1 − t/steps) for every step t and run r: (steps, R, 1, 1)
    minus_step = ((frac.to(dev)[:, None] - 1) * eta[None].to(torch.float64)).to(x.dtype)
    minus_step = minus_step.view(steps, runs, 1, 1).unbind(0)
    seen, curve = [], []

    def test_accuracy() -> torch.Tensor:
        with torch.no_grad():
            xt = split.x_test.expand(runs, *split.x_test.shape)
            if recurrent_steps:
                out = _forward(params, states, xt, kinds[0], p, rate, False, recurrent_steps)
            else:
                out = fast_forward(params, states, xt, spec, False)[0]
            return (out.argmax(-1) == split.y_test).to(torch.float64).mean(1)

    for t, idx in enumerate(order.unbind(1)):  # idx: (R, B)
        if recurrent_steps:
            logits = _forward(params, states, x[idx], kinds[0], p, rate, True, recurrent_steps)
            loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), y[idx].flatten(),
                                                     reduction="sum") / batch_size
            grads = torch.autograd.grad(loss, trained)
        else:
            logits, cache = fast_forward(params, states, x[idx], spec, True)
            grads = [g for gl in fast_grads(params, states, cache, logits, onehot[idx], spec)
                     for g in gl.values()]
        with torch.no_grad():
            for w, g in zip(trained, grads, strict=True):
                w.addcmul_(g, minus_step[t])
        if every and ((t + 1) % every == 0 or t + 1 == steps):
            seen.append((t + 1) * batch_size)
            curve.append(test_accuracy())
    acc = test_accuracy()  # results come back on the CPU, ready to print and plot
    return OnlineResult(acc.cpu(), seen, (torch.stack(curve) if curve else acc[None]).cpu())
