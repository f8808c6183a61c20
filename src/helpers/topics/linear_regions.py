"""Linear regions of ReLU networks at initialisation, counted exactly along line segments.

A ReLU network x ↦ W_{L+1} relu(W_L ⋯ relu(W_1 x + b_1) ⋯ + b_L) is piecewise linear; its
*activation regions* are the sets of inputs sharing one on/off pattern of the N = n_1 + ⋯ + n_L
hidden neurons. Along a segment x(t) = a + t (b − a), t ∈ [0, 1], the breakpoints are the
points where some neuron's pre-activation z_i(x(t)) crosses zero, and the number of regions
the segment meets is the number of breakpoints plus one. Hanin & Rolnick (2019), "Complexity of
Linear Regions in Deep Networks", show that at initialisation this number per unit length is
of order N (not exponential in depth), and that the distance from a point to the nearest
region boundary is of order 1/N.

The count here is exact: breakpoints are propagated layer by layer. Once every breakpoint of
layers < l is known, layer l's pre-activations are affine in t between consecutive knots, so
each of its zeros is found from the sign change between two knots by linear interpolation.
Evaluating on a grid instead misses every pair of breakpoints that fall between two grid points.

Introduced in the chapter "Linear regions at initialisation".
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from helpers.core.validation import check_int, check_ints, check_real

Network = tuple[list[torch.Tensor], list[torch.Tensor]]


def _check_widths(widths: Sequence[int]) -> list[int]:
    widths = check_ints("widths", list(widths), low=1)
    if len(widths) < 3:
        raise ValueError(f"widths needs an input, at least one hidden and an output size, "
                         f"got {widths}")
    return widths


def he_networks(widths: Sequence[int], n_networks: int, *, bias_std: float = 0.0,
                seed: int = 0, dtype: torch.dtype = torch.float64,
                device: torch.device | str = "cpu") -> Network:
    """A batch of ReLU networks with He initialisation, W_l ~ N(0, 2/n_{l−1}), b_l ~ N(0, σ_b²).

    Args:
        widths: [d, n_1, …, n_L, n_out]: input size, hidden widths, output size.
        n_networks: B, how many independent networks to draw.
        bias_std: σ_b (0 gives bias-free, positively homogeneous networks).
        seed: seed of a private CPU generator (the global one is untouched), so every
            device draws the same networks; they are then moved to ``device``.

    Returns:
        ``(weights, biases)``: lists with shapes (B, n_l, n_{l−1}) and (B, n_l).
    """
    widths = _check_widths(widths)
    n_networks = check_int("n_networks", n_networks, low=1)
    bias_std = check_real("bias_std", bias_std, low=0.0)
    gen = torch.Generator().manual_seed(seed)  # cpu: same networks on every device
    weights, biases = [], []
    for n_in, n_out in zip(widths[:-1], widths[1:], strict=True):
        std = math.sqrt(2.0 / n_in)
        w = torch.randn(n_networks, n_out, n_in, generator=gen, dtype=dtype).to(device)
        b = torch.randn(n_networks, n_out, generator=gen, dtype=dtype).to(device)
        weights.append(std * w)
        biases.append(bias_std * b)
    return weights, biases


def _check_network(weights: Sequence[torch.Tensor], biases: Sequence[torch.Tensor]) -> int:
    if len(weights) != len(biases) or len(weights) < 2:
        raise ValueError("weights and biases must be lists of equal length ≥ 2 "
                         "(hidden layers and the output layer)")
    B = weights[0].shape[0]
    for w, b in zip(weights, biases, strict=True):
        if w.ndim != 3 or b.shape != (B, w.shape[1]):
            raise ValueError("weights must have shapes (B, n_l, n_{l-1}) and biases (B, n_l)")
    return B


def pre_activations(weights: Sequence[torch.Tensor], biases: Sequence[torch.Tensor],
                    x: torch.Tensor) -> list[torch.Tensor]:
    """Hidden pre-activations z_l(x) for every hidden layer; x (B, P, d) → list of (B, P, n_l)."""
    _check_network(weights, biases)
    out, h = [], x
    for w, b in zip(weights[:-1], biases[:-1], strict=True):
        z = torch.einsum("bpj,bij->bpi", h, w) + b[:, None, :]
        out.append(z)
        h = torch.relu(z)
    return out


def network_output(weights: Sequence[torch.Tensor], biases: Sequence[torch.Tensor],
                   x: torch.Tensor) -> torch.Tensor:
    """The networks' outputs at x (B, P, d) → (B, P, n_out)."""
    zs = pre_activations(weights, biases, x)
    h = torch.relu(zs[-1])
    return torch.einsum("bpj,bij->bpi", h, weights[-1]) + biases[-1][:, None, :]


def _segment_points(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return a[:, None, :] + t[..., None] * (b - a)[:, None, :]  # (B, K, d)


def _check_segment(a: torch.Tensor, b: torch.Tensor, B: int, d: int) -> None:
    if a.shape != (B, d) or b.shape != (B, d):
        raise ValueError(f"a and b must have shape (B, d) = ({B}, {d}), got {tuple(a.shape)} "
                         f"and {tuple(b.shape)}")


def segment_breakpoints(weights: Sequence[torch.Tensor], biases: Sequence[torch.Tensor],
                        a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Every breakpoint of each network along its segment a → b, found exactly.

    Layer by layer: with the knots T (all breakpoints of earlier layers, plus 0 and 1) the
    pre-activation of a layer-l neuron is affine between consecutive knots, so it vanishes in
    (t_k, t_{k+1}) iff z(t_k) z(t_{k+1}) < 0, at t_k + (t_{k+1} − t_k) z(t_k)/(z(t_k) − z(t_{k+1})).

    Args:
        weights, biases: a batch of B networks (see :func:`he_networks`).
        a, b: segment ends, (B, d): network i is cut along a[i] → b[i].

    Returns:
        ``(t, counts)``: t (B, K) sorted knots in [0, 1] (padded with 1.0), counts (B,) the
        number of breakpoints in (0, 1); the segment meets ``counts + 1`` regions.
    """
    B = _check_network(weights, biases)
    _check_segment(a, b, B, weights[0].shape[2])
    t = torch.tensor([0.0, 1.0], dtype=a.dtype, device=a.device).expand(B, 2).contiguous()
    for layer in range(len(weights) - 1):
        z = pre_activations(weights[: layer + 2], biases[: layer + 2],
                            _segment_points(a, b, t))[layer]  # (B, K, n_l)
        z0, z1 = z[:, :-1], z[:, 1:]
        crossing = z0 * z1 < 0  # (B, K-1, n_l)
        dt = (t[:, 1:] - t[:, :-1])[..., None]
        t_new = (t[:, :-1, None] + dt * z0 / torch.where(crossing, z0 - z1, 1.0))[crossing]
        net = crossing.nonzero()[:, 0]
        per_net = torch.bincount(net, minlength=B)
        if t_new.numel() == 0:
            continue
        start = torch.cumsum(per_net, 0) - per_net
        slot = torch.arange(t_new.numel(), device=t.device) - start[net]
        padded = torch.ones(B, int(per_net.max()), dtype=t.dtype, device=t.device)
        padded[net, slot] = t_new
        t = torch.sort(torch.cat([t, padded], dim=1), dim=1).values
    counts = ((t > 0) & (t < 1)).sum(dim=1)
    return t, counts


def _chunks(B: int, chunk: int | None) -> list[slice]:
    """Slices of at most ``chunk`` networks covering 0..B (one slice when ``chunk`` is None)."""
    size = B if chunk is None else check_int("chunk", chunk, low=1)
    return [slice(i, i + size) for i in range(0, B, size)]


def count_regions(weights: Sequence[torch.Tensor], biases: Sequence[torch.Tensor],
                  a: torch.Tensor, b: torch.Tensor, *, chunk: int | None = None
                  ) -> torch.Tensor:
    """Exact number of activation regions each segment a[i] → b[i] meets, (B,) int64.

    ``chunk`` networks are cut at a time (all at once if None): each network's count depends
    on its own weights only, and the knots × neurons tensor of a pass, (chunk, K, n_l), is
    what bounds the memory for wide layers.
    """
    B = _check_network(weights, biases)
    _check_segment(a, b, B, weights[0].shape[2])
    return torch.cat([segment_breakpoints([w[s] for w in weights], [c[s] for c in biases],
                                          a[s], b[s])[1] + 1 for s in _chunks(B, chunk)])


def count_regions_on_grid(weights: Sequence[torch.Tensor], biases: Sequence[torch.Tensor],
                          a: torch.Tensor, b: torch.Tensor, n_grid: int) -> torch.Tensor:
    """Regions counted by sampling: 1 + number of grid steps where the activation pattern changes.

    A lower bound on :func:`count_regions`: two breakpoints between neighbouring grid points are
    seen as at most one change. Returns (B,) int64.
    """
    B = _check_network(weights, biases)
    _check_segment(a, b, B, weights[0].shape[2])
    n_grid = check_int("n_grid", n_grid, low=2)
    t = torch.linspace(0, 1, n_grid, dtype=a.dtype, device=a.device).expand(B, n_grid)
    pattern = torch.cat([z > 0 for z in pre_activations(weights, biases,
                                                        _segment_points(a, b, t))], dim=2)
    return (pattern[:, 1:] != pattern[:, :-1]).any(dim=2).sum(dim=1) + 1


def boundary_distance(weights: Sequence[torch.Tensor], biases: Sequence[torch.Tensor],
                      x: torch.Tensor, *, chunk: int | None = None) -> torch.Tensor:
    """Euclidean distance from each x to the boundary of its activation region, exactly.

    Inside its activation region R every pre-activation is affine, z_i(y) = z_i(x) + g_i·(y − x)
    with g_i = ∇z_i(x), and R = ∩_i {y : sign z_i(y) = sign z_i(x)} is a convex polytope. The
    distance from x to the boundary of a polytope is the distance to the nearest of its
    hyperplanes: min_i |z_i(x)| / ‖g_i‖ (neurons with g_i = 0 never switch in R).

    Args:
        x: (B, P, d) points, P per network.
        chunk: networks per pass (all at once if None); the gradients, (chunk, P, n_l, d),
            bound the memory.

    Returns:
        (B, P) distances.
    """
    B = _check_network(weights, biases)
    if x.ndim != 3 or x.shape[0] != B or x.shape[2] != weights[0].shape[2]:
        raise ValueError(f"x must have shape (B, P, d) with B={B}, d={weights[0].shape[2]}")
    return torch.cat([_boundary_distance([w[s] for w in weights], [c[s] for c in biases], x[s])
                      for s in _chunks(B, chunk)])


def _boundary_distance(weights: Sequence[torch.Tensor], biases: Sequence[torch.Tensor],
                       x: torch.Tensor) -> torch.Tensor:
    zs = pre_activations(weights, biases, x)
    grad = weights[0][:, None].expand(-1, x.shape[1], -1, -1)  # (B, P, n_1, d)
    best = torch.full(x.shape[:2], math.inf, dtype=x.dtype, device=x.device)
    for layer, z in enumerate(zs):
        if layer > 0:  # chain rule through the ReLU mask of the layer below
            mask = (zs[layer - 1] > 0).to(x.dtype)
            grad = torch.einsum("bij,bpj,bpjk->bpik", weights[layer], mask, grad)
        gnorm = grad.norm(dim=3)
        dist = torch.where(gnorm > 0, z.abs() / torch.where(gnorm > 0, gnorm, 1.0), math.inf)
        best = torch.minimum(best, dist.min(dim=2).values)
    return best


def max_regions_on_line(hidden_widths: Sequence[int]) -> int:
    """Upper bound ∏_l (n_l + 1) on the regions a line can meet (Hanin & Rolnick, eq. 1 in 1-D).

    A layer of n neurons acting on a function with p affine pieces adds at most n·p breakpoints
    (one per neuron per piece), so the count grows at most by the factor n + 1 per layer:
    exponential in depth at fixed width.
    """
    widths = check_ints("hidden_widths", list(hidden_widths), low=1)
    return math.prod(w + 1 for w in widths)


def first_layer_expected_count(a: torch.Tensor, b: torch.Tensor, n_1: int, *,
                               sigma_ratio: float = 0.0) -> torch.Tensor:
    """E[# first-layer breakpoints on a → b] = n_1 · ∠(â, b̂)/π for Gaussian weights and biases.

    With w ~ N(0, σ_w² I) and b ~ N(0, σ_b²), w·x + b = σ_w (g, g₀)·(x, σ_b/σ_w) with (g, g₀)
    standard Gaussian, so the neuron switches between a and b exactly when a random hyperplane
    through the origin separates the augmented points â = (a, ρ), b̂ = (b, ρ), ρ = σ_b/σ_w
    (``sigma_ratio``): probability ∠(â, b̂)/π. With ρ = 0 this is the integral of the density
    sin∠(x, u)/(π‖x‖) derived in the chapter. Works on (..., d) batches.
    """
    rho = check_real("sigma_ratio", sigma_ratio, low=0.0)
    if rho > 0:
        pad = a.new_full((*a.shape[:-1], 1), rho)
        a, b = torch.cat([a, pad], dim=-1), torch.cat([b, pad], dim=-1)
    cos = (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1))
    return n_1 * torch.arccos(cos.clamp(-1.0, 1.0)) / math.pi


def train_regression(weights: Sequence[torch.Tensor], biases: Sequence[torch.Tensor],
                     x: torch.Tensor, y: torch.Tensor, *, steps: int, lr: float = 1e-3
                     ) -> Network:
    """Train every network of the batch by full-batch Adam on the mean squared error.

    Args:
        x: (B, P, d) training inputs per network; y: (B, P) targets (one output).
        steps, lr: Adam steps and step size.

    Returns:
        New ``(weights, biases)`` (the inputs are not modified). Used in the chapter to check
        that training keeps the number of regions of the same order (Hanin & Rolnick, §5).
    """
    steps, lr = check_int("steps", steps, low=1), check_real("lr", lr, low=0.0, low_open=True)
    B = _check_network(weights, biases)
    if x.ndim != 3 or x.shape[0] != B or y.shape != x.shape[:2]:
        raise ValueError(f"x must be (B, P, d) with B = {B} and y (B, P), got "
                         f"{tuple(x.shape)} and {tuple(y.shape)}")
    params = [t.detach().clone().requires_grad_(True) for t in (*weights, *biases)]
    opt = torch.optim.Adam(params, lr=lr)
    n = len(weights)
    for _ in range(steps):
        out = network_output(params[:n], params[n:], x)[..., 0]  # (B, P)
        loss = ((out - y) ** 2).mean(dim=1).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return [p.detach() for p in params[:n]], [p.detach() for p in params[n:]]


def log_slope(n: Sequence[float], ratio: Sequence[float], ratio_se: Sequence[float]
              ) -> tuple[float, float]:
    """Weighted least-squares slope of log(ratio_i) against log(n_i), and its standard error.

    Each point gets the weight 1/var(log ratio_i) with var ≈ (se_i/ratio_i)² (delta method);
    the slope's standard error is 1/sqrt(Σ w_i (log n_i − mean)²), the weighted mean taken
    with the same weights.
    """
    x = torch.log(torch.as_tensor(n, dtype=torch.float64))  # cpu: a handful of summary numbers
    r = torch.as_tensor(ratio, dtype=torch.float64)  # cpu: see above
    se = torch.as_tensor(ratio_se, dtype=torch.float64)  # cpu: see above
    if not (x.shape == r.shape == se.shape) or x.ndim != 1 or len(x) < 2:
        raise ValueError("n, ratio and ratio_se must be 1-D of equal length ≥ 2")
    if not bool((r > 0).all() and (se > 0).all()):
        raise ValueError("ratio and ratio_se must be positive")
    w = (r / se) ** 2
    xm = (w * x).sum() / w.sum()
    sxx = (w * (x - xm) ** 2).sum()
    slope = (w * (x - xm) * torch.log(r)).sum() / sxx
    return slope.item(), (1 / sxx.sqrt()).item()
