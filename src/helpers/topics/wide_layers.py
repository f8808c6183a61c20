"""Wide layers of a CNN give linearly independent features (Nguyen & Hein 2018).

Stack the outputs of layer k for N training images into the feature matrix
F_k ∈ R^{N × n_k} (one row per image, n_k = T_k · d_k neurons: positions × filters). If the
N images are distinct, the activations are analytic (tanh, softplus, sigmoid) and n_k ≥ N, then
rank F_k = N for Lebesgue-almost every choice of the weights and biases of layers 1..k
(Nguyen & Hein, "Optimization Landscape and Expressivity of Deep CNNs", ICML 2018, Thm 3.5).
A linear read-out W ∈ R^{n_k × K} then solves F_k W = Y for *any* targets Y, so the network
can fit arbitrary (even random) labels without touching layers 1..k.

Introduced in the chapter "Wide layers give linearly independent features" (``wide-layers``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from helpers.core.validation import check_choice, check_int, check_positive

ACTIVATIONS = {"tanh": nn.Tanh, "softplus": nn.Softplus, "sigmoid": nn.Sigmoid,
               "relu": nn.ReLU, "identity": nn.Identity}


def distinct_digits(n: int, *, seed: int, dtype: torch.dtype = torch.float64,
                    device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` distinct images of scikit-learn's bundled 8×8 digits, standardised per pixel.

    Exact duplicates are removed first (identical images give identical feature rows, so no
    network could separate them); then ``n`` images are drawn without replacement with a
    NumPy generator seeded by ``seed``. Pixels are standardised with the mean and standard
    deviation of all 1797 images (constant pixels are left centred).

    Returns:
        ``(x, digit)``: images of shape (n, 1, 8, 8) and their true digit classes (n,) int64.
    """
    from sklearn.datasets import load_digits

    n = check_int("n", n)
    bunch = load_digits()
    data, target = bunch.data.astype(np.float64), bunch.target
    _, first = np.unique(data, axis=0, return_index=True)
    keep = np.sort(first)
    if not 1 <= n <= len(keep):
        raise ValueError(f"n must lie in [1, {len(keep)}] (distinct digit images), got {n}")
    sd = data.std(0)
    data = (data - data.mean(0)) / np.where(sd > 0, sd, 1.0)
    pick = np.random.default_rng(seed).choice(keep, size=n, replace=False)
    x = torch.as_tensor(data[pick], dtype=dtype, device=device).reshape(n, 1, 8, 8)
    return x, torch.as_tensor(target[pick], dtype=torch.int64, device=device)


def random_labels(n: int, n_classes: int, *, seed: int, device: torch.device | str = "cpu"
                  ) -> torch.Tensor:
    """``n`` labels drawn uniformly from ``{0, …, n_classes − 1}``, independent of any input."""
    n, n_classes = check_int("n", n, low=1), check_int("n_classes", n_classes, low=2)
    gen = torch.Generator().manual_seed(seed)  # cpu: same labels on every device
    return torch.randint(n_classes, (n,), generator=gen).to(device)


class WideCNN(nn.Module):
    """conv 3×3 (``channels``) → σ → conv 3×3 stride 2 (``wide_channels``) → σ → linear read-out.

    On 8×8 inputs the second ("wide") layer has T = 4·4 = 16 positions, so it has
    n_k = 16 · ``wide_channels`` neurons; :meth:`features` returns them flattened channel by
    channel, so the first 16·d columns are exactly the features of the same network with d
    wide channels (weights are i.i.d., so a sub-network is a network of that width).
    ``activation`` is one of ``tanh``, ``softplus``, ``sigmoid`` (analytic: the theorem's
    case), ``relu`` or ``identity``. PyTorch's default initialisation, drawn from ``seed``.
    """

    positions = 16

    def __init__(self, wide_channels: int, *, channels: int = 8, n_classes: int = 10,
                 activation: str = "tanh", bias: bool = True,
                 dtype: torch.dtype = torch.float64, seed: int = 0):
        super().__init__()
        for name, v in (("wide_channels", wide_channels), ("channels", channels),
                        ("n_classes", n_classes)):
            check_int(name, v, low=1)
        check_choice("activation", activation, sorted(ACTIVATIONS))
        act = ACTIVATIONS[activation]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.body = nn.Sequential(
                nn.Conv2d(1, channels, 3, padding=1, bias=bias, dtype=dtype), act(),
                nn.Conv2d(channels, wide_channels, 3, stride=2, padding=1, bias=bias,
                          dtype=dtype), act(), nn.Flatten())
            self.readout = nn.Linear(self.positions * wide_channels, n_classes, dtype=dtype)
        self.n_k = self.positions * wide_channels

    def features(self, x: torch.Tensor) -> torch.Tensor:  # (N, 1, 8, 8) -> (N, n_k)
        """The wide layer's outputs F_k, one row per image."""
        if x.dim() != 4 or tuple(x.shape[1:]) != (1, 8, 8):
            raise ValueError(f"x must have shape (N, 1, 8, 8), got {tuple(x.shape)}")
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, 1, 8, 8) -> (N, n_classes)
        return self.readout(self.features(x))


def numerical_rank(matrix: torch.Tensor, *, rtol: float | None = None) -> int:
    """#{i : σ_i > rtol · σ_1}, with LAPACK's default rtol = max(m, n) · eps of the dtype."""
    if matrix.dim() != 2:
        raise ValueError(f"matrix must be 2-D, got shape {tuple(matrix.shape)}")
    s = torch.linalg.svdvals(matrix)
    if rtol is None:
        rtol = max(matrix.shape) * torch.finfo(matrix.dtype).eps
    rtol = check_positive("rtol", rtol)
    return int((s > rtol * s[0]).sum()) if s[0] > 0 else 0


def width_sweep(features: torch.Tensor, widths: Sequence[int], *, positions: int = 16
                ) -> dict[str, np.ndarray]:
    """Rank and conditioning of the nested feature matrices F[:, :positions·d] for d in widths.

    Returns arrays indexed like ``widths``: ``n_k``, ``rank``, ``sigma_ratio_N`` = σ_N/σ_1
    (0 when n_k < N: then F has only n_k singular values and rank ≤ n_k < N) and
    ``sigma_ratio_min`` = σ_min(N, n_k)/σ_1 (are the n_k columns independent?).
    """
    n = features.shape[0]
    cols = [positions * d for d in widths]
    if not cols or min(cols) < 1 or max(cols) > features.shape[1]:
        raise ValueError(f"widths must lie in [1, {features.shape[1] // positions}], got {widths}")
    out: dict[str, list] = {"n_k": [], "rank": [], "sigma_ratio_N": [], "sigma_ratio_min": []}
    for c in cols:
        s = torch.linalg.svdvals(features[:, :c])
        tol = max(n, c) * torch.finfo(features.dtype).eps * s[0]
        out["n_k"].append(c)
        out["rank"].append(int((s > tol).sum()))
        out["sigma_ratio_N"].append((s[n - 1] / s[0]).item() if c >= n else 0.0)
        out["sigma_ratio_min"].append((s[-1] / s[0]).item())
    return {k: np.asarray(v) for k, v in out.items()}


def readout_fit(features: torch.Tensor, labels: torch.Tensor, n_classes: int
                ) -> tuple[torch.Tensor, float, float]:
    """Least-squares read-out W = F⁺ Y onto one-hot targets Y; the minimum-norm exact fit when
    rank F = N.

    Returns ``(W (n_k, n_classes), training accuracy of argmax F W, max |F W − Y|)``.
    """
    if features.dim() != 2 or labels.shape != (features.shape[0],):
        raise ValueError(f"features must be (N, n_k) and labels (N,), got "
                         f"{tuple(features.shape)} and {tuple(labels.shape)}")
    targets = nn.functional.one_hot(labels, n_classes).to(features.dtype)
    w = torch.linalg.lstsq(features, targets, driver="gelsd").solution
    fitted = features @ w
    accuracy = (fitted.argmax(1) == labels).double().mean().item()
    return w, accuracy, (fitted - targets).abs().max().item()


def gauss_newton_top_eigenvalue(model: nn.Module, x: torch.Tensor, *, iters: int = 30,
                                seed: int = 0) -> float:
    """λ_max of the Gauss–Newton matrix G = (1/N) Jᵀ J of the squared loss, J = ∂f(x)/∂θ.

    G is the Hessian of ½ Σ_j (f_j(x_i) − Y_ij)², averaged over the N samples, at zero
    residual, and its top eigenvalue sets gradient descent's stability limit η < 2/λ_max.
    Computed by ``iters`` steps of power iteration with Jacobian–vector products
    (``torch.func.jvp``/``vjp``), never forming J; started from a Gaussian drawn from ``seed``.
    Power iteration approaches λ_max from below. Chapter ``wide-layers``.
    """
    from torch.func import functional_call, jvp, vjp

    iters = check_int("iters", iters, low=1)
    params = {k: p.detach() for k, p in model.named_parameters()}
    out = lambda p: functional_call(model, p, (x,))  # noqa: E731
    _, pull_back = vjp(out, params)
    gen = torch.Generator().manual_seed(seed)  # cpu: the same start on every device
    v = {k: torch.randn(p.shape, generator=gen, dtype=p.dtype).to(p.device)
         for k, p in params.items()}
    lam = 0.0
    for _ in range(iters):
        norm = torch.sqrt(sum((t ** 2).sum() for t in v.values()))
        v = {k: t / norm for k, t in v.items()}
        (gv,) = pull_back(jvp(out, (params,), (v,))[1] / x.shape[0])  # G v = Jᵀ J v / N
        lam = float(sum((gv[k] * v[k]).sum() for k in v))  # Rayleigh quotient vᵀ G v
        v = gv
    return lam


def train_full_gd(model: nn.Module, x: torch.Tensor, labels: torch.Tensor, *, eta: float,
                  max_steps: int, loss: str = "squared") -> list[float]:
    """Full-batch gradient descent over *all* parameters of ``model``.

    ``loss="squared"``: ½ Σ_j (f_j(x_i) − Y_ij)² per sample on one-hot targets Y, averaged
    over samples (the loss of Nguyen & Hein's landscape theorem); ``"cross-entropy"``: softmax
    cross-entropy. Stops as soon as every training label is predicted (or after
    ``max_steps``); returns the training accuracy before each step and after the last one.
    """
    eta, max_steps = check_positive("eta", eta), check_int("max_steps", max_steps, low=1)
    check_choice("loss", loss, ["squared", "cross-entropy"])
    params = [p for p in model.parameters() if p.requires_grad]
    n_classes = model(x[:1]).shape[1]
    targets = nn.functional.one_hot(labels, n_classes).to(x.dtype)
    history = []
    for _ in range(max_steps):
        out = model(x)
        history.append((out.argmax(1) == labels).double().mean().item())
        if history[-1] == 1.0:
            return history
        objective = (0.5 * ((out - targets) ** 2).sum(1).mean() if loss == "squared"
                     else nn.functional.cross_entropy(out, labels))
        grads = torch.autograd.grad(objective, params)
        with torch.no_grad():
            for p, g in zip(params, grads, strict=True):
                p -= eta * g
    with torch.no_grad():
        history.append((model(x).argmax(1) == labels).double().mean().item())
    return history
