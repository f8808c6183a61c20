"""Synthetic bilaterally symmetric 3-D "heads", rendered at any rotation about the vertical axis.

A head is a sum of K isotropic 3-D Gaussian blobs (centre c_k, width s_k, amplitude a_k): two
head-sized blobs, hair, eyes, brows, ears, nose, mouth, cheeks, chin and a few random features.
A symmetric head has its blobs in mirror pairs across the sagittal plane x = 0 (c = (x, y, z)
and (−x, y, z) with equal width and amplitude) or on that plane. Rotating by θ about the
vertical y axis,

    x' = x cos θ + z sin θ,   z' = −x sin θ + z cos θ,

and projecting orthographically onto the (x', y) image plane gives the image

    I_θ(u, v) = Σ_k a_k σ(z'_k / τ) exp(−((u − x'_k)² + (v − y_k)²) / (2 s_k²)),

where the logistic factor σ(z'/τ) dims blobs that face away from the viewer (a soft stand-in
for occlusion). The pixel grid is symmetric about u = 0, so for a symmetric head the view at −θ
is *exactly* the left-right mirror image of the view at θ, I_{−θ} = R I_θ: the property behind
the mirror-symmetric tuning of Leibo et al. (2017), arXiv:1606.01552.

Introduced in the chapter "Hebbian learning implies mirror-symmetric tuning to head
orientation".
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from helpers.core.validation import check_int, check_positive, check_real

Tensor = torch.Tensor

# The shared face plan: (x, y, z, width, amplitude) of the features on one side (x >= 0) or on
# the midline (x = 0). Features with x > 0 get a mirror partner at −x.
_FACE_PLAN = (
    (0.00, -0.05, 0.30, 0.70, 0.60),   # face half of the skull
    (0.00, 0.15, -0.35, 0.70, 0.60),   # back half of the skull
    (0.00, 0.45, -0.55, 0.55, -0.80),  # hair at the back (dark)
    (0.36, 0.25, 0.82, 0.16, -0.90),   # eye (dark)
    (0.36, 0.42, 0.80, 0.18, 0.40),    # brow
    (0.98, 0.05, -0.05, 0.20, 0.45),   # ear
    (0.48, -0.20, 0.72, 0.25, 0.35),   # cheek
    (0.00, 0.00, 1.05, 0.18, 0.90),    # nose
    (0.00, -0.45, 0.85, 0.20, -0.70),  # mouth (dark)
    (0.00, -0.78, 0.55, 0.22, 0.40),   # chin
)


@dataclass(frozen=True)
class Heads:
    """A batch of H heads of K Gaussian blobs each.

    Attributes:
        centres: (H, K, 3) blob centres (x, y, z); x is left-right, y up, z towards the viewer
            at θ = 0.
        widths: (H, K) blob standard deviations (positive).
        amplitudes: (H, K) blob amplitudes (negative for dark features).
    """

    centres: Tensor
    widths: Tensor
    amplitudes: Tensor

    def __post_init__(self) -> None:
        c, w, a = self.centres, self.widths, self.amplitudes
        if c.ndim != 3 or c.shape[-1] != 3 or w.shape != c.shape[:2] or a.shape != c.shape[:2]:
            raise ValueError(f"centres must be (H, K, 3) and widths, amplitudes (H, K); got "
                             f"{tuple(c.shape)}, {tuple(w.shape)}, {tuple(a.shape)}")
        if not (torch.isfinite(c).all() and torch.isfinite(w).all() and torch.isfinite(a).all()):
            raise ValueError("centres, widths and amplitudes must be finite")
        if (w <= 0).any():
            raise ValueError("widths must be positive")

    def __len__(self) -> int:
        return self.centres.shape[0]

    def __getitem__(self, index) -> Heads:
        """The sub-batch ``heads[index]`` (an int keeps a batch of one)."""
        if isinstance(index, int):
            index = slice(index, index + 1 if index != -1 else None)
        return Heads(self.centres[index], self.widths[index], self.amplitudes[index])

    def mirrored(self) -> Heads:
        """The heads reflected across the sagittal plane (x → −x)."""
        flip = torch.tensor([-1.0, 1.0, 1.0], dtype=self.centres.dtype, device=self.centres.device)
        return Heads(self.centres * flip, self.widths, self.amplitudes)


def random_heads(n: int, *, seed: int, n_extra: int = 3, jitter: float = 0.08,
                 asymmetry: float = 0.0, dtype: torch.dtype = torch.float64,
                 device: torch.device | str = "cpu") -> Heads:
    """n random heads: the shared face plan, jittered per identity, plus random features.

    The parameters are drawn on the CPU (the same heads on every device) and returned on
    ``device``.

    Each identity moves every feature of the plan by N(0, jitter²) per coordinate, scales
    its width by exp(N(0, 0.2²)) and its amplitude by exp(N(0, 0.3²)), and adds ``n_extra``
    random features (a mirror pair each) on the front of the head. Mirror partners share all
    their parameters, so with ``asymmetry = 0`` every head is exactly bilaterally symmetric.
    ``asymmetry > 0`` then moves every blob independently by N(0, asymmetry²) per coordinate and
    scales its amplitude by exp(N(0, asymmetry²)), breaking the symmetry.
    """
    check_int("n", n, low=1)
    check_int("n_extra", n_extra, low=0)
    check_real("jitter", jitter, low=0.0)
    check_real("asymmetry", asymmetry, low=0.0)
    cpu = torch.device("cpu")  # drawn on the CPU: the same heads on every device
    gen = torch.Generator(device=cpu).manual_seed(int(seed))
    draw = {"generator": gen, "dtype": dtype}
    plan = torch.tensor(_FACE_PLAN, dtype=dtype, device=cpu)  # (F, 5)
    half = plan.expand(n, -1, -1).clone()  # (n, F, 5)
    half[..., :3] += jitter * torch.randn(n, len(plan), 3, **draw, device=cpu)
    half[..., 3] *= torch.exp(0.2 * torch.randn(n, len(plan), **draw, device=cpu))
    half[..., 4] *= torch.exp(0.3 * torch.randn(n, len(plan), **draw, device=cpu))
    sided = plan[:, 0] > 0  # (F,) features with a mirror partner; the rest sit on x = 0
    half[:, ~sided, 0] = 0.0
    if n_extra:
        # random features on the front of the head: directions on the sphere with z > 0
        u = torch.randn(n, n_extra, 3, **draw, device=cpu)
        u[..., 0] = u[..., 0].abs()
        u[..., 2] = u[..., 2].abs() + 0.3
        u = 0.9 * u / u.norm(dim=-1, keepdim=True)
        w = 0.10 + 0.15 * torch.rand(n, n_extra, 1, **draw, device=cpu)
        a = 0.8 * torch.randn(n, n_extra, 1, **draw, device=cpu)
        half = torch.cat([half, torch.cat([u, w, a], dim=-1)], dim=1)
        sided = torch.cat([sided, torch.ones(n_extra, dtype=torch.bool, device=cpu)])
    partners = half[:, sided].clone()
    partners[..., 0] *= -1  # the mirror partner shares width and amplitude
    blobs = torch.cat([half, partners], dim=1)  # (n, K, 5)
    centres, widths, amps = blobs[..., :3], blobs[..., 3], blobs[..., 4]
    if asymmetry > 0:
        centres = centres + asymmetry * torch.randn(centres.shape, **draw, device=cpu)
        amps = amps * torch.exp(asymmetry * torch.randn(amps.shape, **draw, device=cpu))
    return Heads(centres.to(device), widths.to(device), amps.to(device))


def pixel_grid(size: int, *, extent: float = 1.6, dtype: torch.dtype = torch.float64,
               device: torch.device | str = "cpu") -> Tensor:
    """``size`` pixel centres on [−extent, extent], exactly antisymmetric: g[::-1] == −g."""
    check_int("size", size, low=2)
    check_positive("extent", extent)
    # (i − (size−1)/2) is a half-integer, so negation is exact and so is the product
    return ((torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2)
            * (2 * extent / (size - 1)))


def render_heads(heads: Heads, angles_deg: Tensor, *, size: int = 24, extent: float = 1.6,
                 tau: float = 0.25) -> Tensor:
    """Render every head at every angle: images (H, V, size, size), rows top to bottom.

    The view angle θ (degrees) rotates the head about the vertical axis (see the module
    docstring); column j of an image is the horizontal coordinate ``pixel_grid(size)[j]``,
    so ``images.flip(-1)`` is the left-right mirror image. ``tau`` sets how sharply blobs
    turned away from the viewer fade.
    """
    angles = torch.as_tensor(angles_deg, dtype=heads.centres.dtype, device=heads.centres.device)
    if angles.ndim != 1 or not torch.isfinite(angles).all():
        raise ValueError("angles_deg must be a finite 1-D tensor of angles in degrees")
    check_positive("tau", tau)
    theta = torch.deg2rad(angles)
    cos, sin = torch.cos(theta)[None, :, None], torch.sin(theta)[None, :, None]  # (1, V, 1)
    x, y, z = heads.centres.unbind(-1)  # (H, K) each
    x_rot = x[:, None] * cos + z[:, None] * sin  # (H, V, K)
    z_rot = -x[:, None] * sin + z[:, None] * cos  # (H, V, K)
    weight = heads.amplitudes[:, None] * torch.sigmoid(z_rot / tau)  # (H, V, K)
    g = pixel_grid(size, extent=extent, dtype=x.dtype, device=x.device)  # (P,)
    s2 = 2 * heads.widths[..., None] ** 2  # (H, K, 1)
    cols = torch.exp(-(g - x_rot[..., None]) ** 2 / s2[:, None])  # (H, V, K, P)
    rows = torch.exp(-(-g - y[..., None]) ** 2 / s2)  # (H, K, P); row 0 is the top (v = +extent)
    return torch.einsum("hvk,hkr,hvkc->hvrc", weight, rows, cols)


def view_vectors(images: Tensor) -> Tensor:
    """Flatten the last two axes and normalise each image: zero pixel mean, unit norm.

    (..., P, P) → (..., P²). Both steps commute with the left-right flip, so they keep the
    mirror relation I_{−θ} = R I_θ.
    """
    if images.ndim < 2:
        raise ValueError(f"images must have at least 2 axes, got shape {tuple(images.shape)}")
    x = images.flatten(-2)
    x = x - x.mean(-1, keepdim=True)
    return x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def flip_matrix(size: int, *, dtype: torch.dtype = torch.float64,
                device: torch.device | str = "cpu") -> Tensor:
    """The reflection R as a (size², size²) permutation matrix acting on flattened images."""
    index = torch.arange(size * size, device=device).reshape(size, size).flip(-1).flatten()
    return torch.eye(size * size, dtype=dtype, device=device)[index]
