"""Hebbian learning rules (Oja, Sanger) and the mirror-symmetry index of a tuning curve.

Oja's rule (Oja 1982) for one linear unit y = wᵀx, fed the samples x one at a time,

    w ← w + η y (x − y w),

is Hebb's rule η y x with a decay that keeps ‖w‖ near 1; for small η it converges to ± the top
eigenvector of the second-moment matrix E[x xᵀ] (the covariance when the data are centred).
Sanger's generalized Hebbian algorithm (Sanger 1989) for k units y = W x,

    W ← W + η (y xᵀ − LT(y yᵀ) W),

with LT the lower triangle (diagonal included), converges to the top k eigenvectors in order.
Leibo et al. (2017, arXiv:1606.01552) use these rules on the views of bilaterally symmetric
heads: the view covariance commutes with the mirror reflection, so its eigenvectors are even
or odd images and the squared responses are mirror-symmetric in the view angle, measured by
:func:`mirror_symmetry_index`. For their view-tolerant top layer, :func:`shuffled_templates`
builds the control (views that are not one head's rotations) and :func:`clustered_difference`
the paired difference with a standard error clustered by test head.

Introduced in the chapter "Hebbian learning implies mirror-symmetric tuning to head
orientation".
"""

from __future__ import annotations

import math

import torch

Tensor = torch.Tensor


def _check_data(X: Tensor, name: str = "X") -> Tensor:
    if not isinstance(X, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(X).__name__}")
    if X.ndim not in (2, 3) or X.shape[-2] < 1 or X.shape[-1] < 1:
        raise ValueError(f"{name} must be (n, d) or (B, n, d), got shape {tuple(X.shape)}")
    if not X.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {X.dtype}")
    if not torch.isfinite(X).all():
        raise ValueError(f"{name} contains non-finite values (nan or inf)")
    return X if X.ndim == 3 else X[None]


def _check_rate(eta: float, epochs: int) -> None:
    if isinstance(eta, bool) or not isinstance(eta, int | float) or not math.isfinite(eta):
        raise TypeError(f"eta must be a finite real number, got {eta!r}")
    if eta <= 0:
        raise ValueError(f"eta must be positive, got {eta}")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive int, got {epochs!r}")


def _orders(batch: int, n: int, epochs: int, gen: torch.Generator) -> Tensor:
    """(epochs * n, batch) sample indices: a fresh random order of the n samples every epoch."""
    keys = torch.rand(epochs, batch, n, generator=gen)  # cpu: CPU draws/indices
    return keys.argsort(dim=-1).permute(0, 2, 1).reshape(epochs * n, batch)


def _generalized_hebbian(X: Tensor, W0: Tensor, eta: float, order: Tensor) -> Tensor:
    """Sanger's rule on X (B, n, d) from W0 (B, k, d), visiting samples in ``order`` (S, B).

    Exact, but computed in the coordinates of the data: write W = A X + M W⊥ with W⊥ the part
    of W0 orthogonal to the span of the samples. Every update η (y xᵀ − LT(y yᵀ) W) with
    x = X[i] becomes A ← A + η (y e_iᵀ − LT(y yᵀ) A) and M ← M − η LT(y yᵀ) M, where
    y = W x = A (X X[i]) only needs the Gram matrix. Each step then costs O(k n) instead of
    O(k d), which matters when a few dozen views live in hundreds of pixels.
    """
    B, n, d = X.shape
    k = W0.shape[1]
    gram = X @ X.mT  # (B, n, n)
    A = W0 @ torch.linalg.pinv(X)  # (B, k, n): A X is W0 projected on the span of the samples
    W_perp = W0 - A @ X  # (B, k, d)
    M = torch.eye(k, dtype=X.dtype, device=X.device).expand(B, k, k).clone()
    onehot = torch.eye(n, dtype=X.dtype, device=X.device)
    rows = torch.arange(B, device=X.device)
    for i in order.to(X.device):
        y = torch.bmm(A, gram[rows, i, :, None])  # (B, k, 1): outputs y = W x (gram symmetric)
        lower = (y * y.mT).tril_()  # (B, k, k)
        A = torch.baddbmm(A, lower, A, alpha=-eta).add_(y * onehot[i][:, None], alpha=eta)
        M = torch.baddbmm(M, lower, M, alpha=-eta)
    return A @ X + M @ W_perp


def _start(shape: tuple[int, ...], gen: torch.Generator, X: Tensor) -> Tensor:
    W = torch.randn(shape, generator=gen, dtype=X.dtype).to(X.device)
    return W / W.norm(dim=-1, keepdim=True)


def oja(X: Tensor, *, eta: float, epochs: int, seed: int, w0: Tensor | None = None) -> Tensor:
    """Oja's rule w ← w + η y (x − y w), y = wᵀx, over ``epochs`` shuffled passes through X.

    Batched: X of shape (B, n, d) trains B independent units at once (one per template), each
    on its own n samples in its own random order. Oja's rule is Sanger's rule with k = 1 and
    shares its exact, fast implementation (see :func:`sanger`).

    Args:
        X: (n, d) or (B, n, d) samples (centre them first to find the top principal component).
        eta: constant step size, > 0 (stable for η‖x‖² well below 1).
        epochs: passes through the data.
        seed: seeds the random unit-norm start (unless ``w0`` is given) and the sample orders.
        w0: optional start, (d,) or (B, d).

    Returns:
        w: (d,) or (B, d), close to ± the top eigenvector of E[x xᵀ] (Oja 1982).
    """
    Xb = _check_data(X)
    _check_rate(eta, epochs)
    B, n, d = Xb.shape
    gen = torch.Generator().manual_seed(int(seed))  # cpu: CPU draws/indices
    if w0 is None:
        w = _start((B, d), gen, Xb)
    else:
        if not isinstance(w0, Tensor) or w0.shape[-1] != d or not torch.isfinite(w0).all():
            raise ValueError(f"w0 must be a finite tensor of shape (d,) or (B, d) with d={d}")
        w = w0.to(Xb).expand(B, d).clone()
    w = _generalized_hebbian(Xb, w[:, None], eta, _orders(B, n, epochs, gen))[:, 0]
    return w if X.ndim == 3 else w[0]


def sanger(X: Tensor, k: int, *, eta: float, epochs: int, seed: int) -> Tensor:
    """Sanger's rule W ← W + η (y xᵀ − LT(y yᵀ) W), y = W x: k Hebbian units, batched like oja.

    Row j learns from the input minus what units 1..j−1 already reconstruct, so it converges
    to ± the j-th eigenvector of E[x xᵀ] when the top k + 1 eigenvalues are distinct
    (Sanger 1989). Returns W of shape (k, d) or (B, k, d).
    """
    Xb = _check_data(X)
    _check_rate(eta, epochs)
    B, n, d = Xb.shape
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= d:
        raise ValueError(f"k must be an int in [1, d={d}], got {k!r}")
    gen = torch.Generator().manual_seed(int(seed))  # cpu: CPU draws/indices
    W = _generalized_hebbian(Xb, _start((B, k, d), gen, Xb), eta, _orders(B, n, epochs, gen))
    return W if X.ndim == 3 else W[0]


def principal_components(X: Tensor, k: int, *, center: bool = True) -> tuple[Tensor, Tensor]:
    """Top-k eigenpairs of C = (1/n) Σ (x − x̄)(x − x̄)ᵀ (or of E[x xᵀ] when ``center=False``).

    Computed with ``torch.linalg.eigh`` on the n × n Gram matrix G = X Xᵀ / n, which has the
    same non-zero eigenvalues as C; each eigenvector u of G gives the eigenvector
    v = Xᵀ u / ‖Xᵀ u‖ of C. Exact, and cheap when n ≪ d (a few dozen views of a large image).

    Returns:
        eigenvalues (..., k) in decreasing order and eigenvectors (..., k, d) as rows.
    """
    Xb = _check_data(X)
    n = Xb.shape[1]
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= n:
        raise ValueError(f"k must be an int in [1, n={n}], got {k!r}")
    if center:
        Xb = Xb - Xb.mean(dim=1, keepdim=True)
    evals, evecs = torch.linalg.eigh(Xb @ Xb.mT / n)  # ascending
    evals, evecs = evals.flip(-1)[:, :k], evecs.flip(-1)[:, :, :k]
    V = (Xb.mT @ evecs).mT  # (B, k, d)
    V = V / V.norm(dim=-1, keepdim=True).clamp_min(1e-300)
    return (evals, V) if X.ndim == 3 else (evals[0], V[0])


def centre_views(X: Tensor, *, center: bool = True) -> tuple[Tensor, Tensor, Tensor]:
    """Centre each template's views and scale them to unit mean squared norm.

    Xc = (X − x̄) / s with x̄ the mean view of the template and s² = mean ‖x − x̄‖², so every
    template's covariance has trace 1 and one step size η suits all templates (the scale does
    not change the eigenvectors). ``center=False`` skips the subtraction (x̄ = 0).

    Args:
        X: (B, n, d) views of B templates.

    Returns:
        Xc (B, n, d), the means x̄ (B, d) and the scales s (B,): a unit's input is (x − x̄)/s.
    """
    Xb = _check_data(X)
    mean = Xb.mean(1) if center else torch.zeros_like(Xb[:, 0])
    Xc = Xb - mean[:, None]
    scale = Xc.pow(2).sum(-1).mean(-1).sqrt().clamp_min(1e-300)
    Xc = Xc / scale[:, None, None]
    return (Xc, mean, scale) if X.ndim == 3 else (Xc[0], mean[0], scale[0])


def unit_responses(W: Tensor, Y: Tensor, mean: Tensor, scale: Tensor) -> Tensor:
    """Squared responses r = (wᵀ (y − x̄) / s)² of every template's unit(s) to every image.

    Args:
        W: (B, d) one unit per template, or (B, k, d) k units per template.
        Y: (..., d) images (e.g. (N, V, d): N heads at V views).
        mean, scale: (B, d) and (B,) from :func:`centre_views` on the templates' views.

    Returns:
        (B, ...) or (B, k, ...) squared responses.
    """
    if W.ndim not in (2, 3) or W.shape[0] != mean.shape[0] or W.shape[-1] != Y.shape[-1]:
        raise ValueError(f"W must be (B, d) or (B, k, d) matching mean (B, d) and Y (..., d); "
                         f"got {tuple(W.shape)}, {tuple(mean.shape)}, {tuple(Y.shape)}")
    Wk = W if W.ndim == 3 else W[:, None]
    lin = torch.einsum("bkd,...d->bk...", Wk, Y)  # (B, k, ...)
    lin = lin - (Wk * mean[:, None]).sum(-1).reshape(*Wk.shape[:2], *[1] * (Y.ndim - 1))
    r = (lin / scale.reshape(-1, 1, *[1] * (Y.ndim - 1))) ** 2
    return r if W.ndim == 3 else r[:, 0]


def mirror_pairs(angles: Tensor, *, atol: float = 1e-9) -> Tensor:
    """For each angle θ_i the index j with θ_j = −θ_i; raises if the set is not symmetric."""
    a = torch.as_tensor(angles, dtype=torch.float64)  # cpu: CPU draws/indices
    if a.ndim != 1 or len(a) < 2:
        raise ValueError(f"angles must be a 1-D sequence of at least 2 angles, got shape "
                         f"{tuple(a.shape)}")
    if not torch.isfinite(a).all():
        raise ValueError("angles contains non-finite values")
    gap = (a[:, None] + a[None, :]).abs()  # |θ_i + θ_j|
    j = gap.argmin(dim=1)
    bad = gap[torch.arange(len(a)), j] > atol * max(1.0, a.abs().max().item())  # cpu: CPU draw
    if bad.any():
        raise ValueError(f"angles must be symmetric about 0 (each θ with its −θ); no mirror "
                         f"partner for {a[bad].tolist()}")
    return j


def mirror_symmetry_index(responses: Tensor, angles: Tensor) -> Tensor:
    """MSI = corr(r(θ), r(−θ)): Pearson correlation of a tuning curve with its mirror image.

    The correlation runs over all angles θ ≠ 0 of a set symmetric about 0 (θ = 0 is its own
    mirror and would only add agreement): MSI = 1 for an even curve r(−θ) = r(θ) and −1 for an
    odd one (Leibo et al. 2017). A constant curve has no defined correlation and gives NaN.

    Args:
        responses: (..., V) tuning curves, one response per angle (last axis).
        angles: (V,) view angles, a set symmetric about 0 (any order).

    Returns:
        (...) the MSI of every curve.
    """
    if not isinstance(responses, Tensor):
        raise TypeError(f"responses must be a torch.Tensor, got {type(responses).__name__}")
    partner = mirror_pairs(angles)
    if responses.ndim < 1 or responses.shape[-1] != len(partner):
        raise ValueError(f"responses must have one value per angle on its last axis "
                         f"({len(partner)}), got shape {tuple(responses.shape)}")
    if not torch.isfinite(responses).all():
        raise ValueError("responses contains non-finite values (nan or inf)")
    keep = partner != torch.arange(len(partner))  # cpu: CPU draws/indices; drop θ = 0
    r = responses.to(torch.float64)[..., keep]
    m = responses.to(torch.float64)[..., partner[keep]]
    r, m = r - r.mean(-1, keepdim=True), m - m.mean(-1, keepdim=True)
    return (r * m).sum(-1) / (r.norm(dim=-1) * m.norm(dim=-1))


def shuffled_templates(X: Tensor, *, seed: int) -> Tensor:
    """Pseudo-templates whose view at each angle comes from a different, random template head.

    Xs[t, v] = X[π_v(t), v] with an independent random permutation π_v of the templates for
    every view v: the same images at the same angles, but no pseudo-template is the orbit of
    one head under rotation (the hypothesis behind the pooled top layer of Leibo et al. 2017).
    The negative control of the view-tolerance check in the mirror-symmetry chapter.

    Args:
        X: (T, V, d) views of T templates at V angles.
        seed: seeds the permutations.

    Returns:
        (T, V, d) shuffled views.
    """
    if not isinstance(X, Tensor) or X.ndim != 3:
        raise ValueError(f"X must be a (T, V, d) tensor, got {getattr(X, 'shape', type(X))}")
    gen = torch.Generator().manual_seed(int(seed))  # cpu: the same permutations on every device
    perm = torch.rand(X.shape[0], X.shape[1], generator=gen).argsort(0)  # cpu: as gen; (T, V)
    return X[perm.to(X.device), torch.arange(X.shape[1], device=X.device)]


def clustered_difference(a: Tensor, b: Tensor) -> tuple[float, float]:
    """Mean paired difference of a − b and its standard error clustered by the first axis.

    The rows (e.g. test heads) are independent but the entries of one row (the same head at
    several views) are not, so the standard error is that of the per-row means d̄_h over the
    H rows: SE = std(d̄_h) / √H (ddof = 1).

    Args:
        a, b: (H, m) measurements (booleans or numbers), paired entry by entry.

    Returns:
        (mean difference, clustered standard error) as floats.
    """
    if not isinstance(a, Tensor) or not isinstance(b, Tensor) or a.shape != b.shape:
        raise ValueError("a and b must be tensors of the same shape (H, m)")
    if a.ndim != 2 or a.shape[0] < 2 or a.shape[1] < 1:
        raise ValueError(f"a and b must be (H, m) with H >= 2 rows, got shape {tuple(a.shape)}")
    per_row = (a.to(torch.float64) - b.to(torch.float64)).mean(1)  # (H,)
    return per_row.mean().item(), (per_row.std() / math.sqrt(len(per_row))).item()


def view_tuned(Y: Tensor, stored: Tensor, *, sigma2: float) -> Tensor:
    """First stage of the hierarchy: view-tuned units r_j(y) = exp(−‖y − s_j‖² / 2σ²).

    One unit per stored view s_j (the classic view-tuned cell of face patches ML/MF). When the
    stored set is closed under the mirror reflection R (all views of symmetric heads at an
    angle set symmetric about 0), R permutes the units: r(Ry) = Π r(y) with Π the permutation
    that sends s_j to R s_j, an orthogonal involution, so the theorem of the mirror-symmetry
    chapter holds for Hebbian units fed these responses with Π in place of R.

    Args:
        Y: (..., d) images; stored: (m, d) stored views; sigma2: σ² > 0.

    Returns:
        (..., m) responses.
    """
    if not isinstance(stored, Tensor) or stored.ndim != 2 or Y.shape[-1] != stored.shape[-1]:
        raise ValueError(f"stored must be (m, d) with d = Y.shape[-1]; got "
                         f"{tuple(getattr(stored, 'shape', ()))} and {tuple(Y.shape)}")
    if isinstance(sigma2, bool) or not isinstance(sigma2, int | float) or not sigma2 > 0:
        raise ValueError(f"sigma2 must be a positive number, got {sigma2!r}")
    d2 = torch.cdist(Y.reshape(-1, Y.shape[-1]), stored).pow(2)  # (prod(...), m)
    return torch.exp(-d2 / (2 * sigma2)).reshape(*Y.shape[:-1], len(stored))


def random_combinations(Xc: Tensor, *, seed: int) -> Tensor:
    """The alternative to Hebbian learning: w = Σ_v a_v x_v / ‖·‖, a_v ~ N(0, 1) per template.

    A unit that stores a random mixture of its template's (centred) views, as any rule that
    keeps views without extracting principal components would: it lives in the same span as
    the Oja unit but has no reason to be even or odd. Xc: (B, n, d); returns (B, d).
    """
    Xb = _check_data(Xc, "Xc")
    gen = torch.Generator().manual_seed(int(seed))  # cpu: the same mixtures on every device
    a = torch.randn(Xb.shape[:2], generator=gen, dtype=Xb.dtype).to(Xb.device)  # (B, n)
    w = torch.einsum("bn,bnd->bd", a, Xb)
    return w / w.norm(dim=-1, keepdim=True).clamp_min(1e-300)


def identified(features: Tensor, angles: Tensor) -> Tensor:
    """(N, V, f) features of N heads at V views → (N, V) booleans: matched to its own frontal view.

    Each head's frontal view (θ = 0) is the gallery; every view is a probe assigned to the
    gallery entry of highest correlation across features.
    """
    if not isinstance(features, Tensor):
        raise TypeError(f"features must be a torch.Tensor, got {type(features).__name__}")
    frontal = torch.as_tensor(angles, device=features.device) == 0
    if features.ndim != 3 or int(frontal.sum()) != 1 or features.shape[1] != len(frontal):
        raise ValueError("features must be (N, V, f) with V = len(angles) and angles holding 0 "
                         f"once; got {tuple(features.shape)}")
    f = torch.nn.functional.normalize(features - features.mean(-1, keepdim=True), dim=-1)
    scores = f @ f[:, frontal].squeeze(1).T  # (N, V, N gallery)
    return scores.argmax(-1) == torch.arange(len(f), device=f.device)[:, None]


def pooled(W: Tensor, Y: Tensor, mean: Tensor, scale: Tensor) -> Tensor:
    """Top layer: per template, the summed squared responses of its k units, (N, V, T).

    W (T, k, d), Y (N, V, d), mean (T, d), scale (T,) as in :func:`unit_responses`.
    """
    return unit_responses(W, Y, mean, scale).sum(1).permute(1, 2, 0)


def gains_over(correct: dict[str, Tensor], baseline: str, keep: Tensor) -> dict[str, tuple]:
    """Per layer, (mean, clustered SE, mean / SE) of its gain over ``baseline`` on views ``keep``.

    ``correct`` maps layer names to (N, V) booleans of :func:`identified`; the gain is the
    per-head fraction of the kept views identified minus the baseline's, see
    :func:`clustered_difference`. The baseline itself is left out.
    """
    if baseline not in correct:
        raise ValueError(f"baseline must be one of {sorted(correct)}, got {baseline!r}")
    out = {}
    for name, c in correct.items():
        if name != baseline:
            mean, se = clustered_difference(c[:, keep], correct[baseline][:, keep])
            z = mean / se if se > 0 else (0.0 if mean == 0 else math.copysign(math.inf, mean))
            out[name] = (mean, se, z)
    return out
