"""Synthetic "videos": a 3-D head translating across a strip while it rotates in depth.

A video of object k is a sequence of P frames. In frame p the head is rendered (with
:func:`helpers.engine.heads.render_heads`) at the view angle

    θ_p = θ_0 + (p / (P − 1)) (θ_1 − θ_0) + ε,   ε ~ N(0, angle_jitter²) per video,

and pasted into square p of a strip, the squares ``stride`` pixels apart: columns
[p·stride, p·stride + size). With ``stride = size`` the squares do not overlap and the same
head at two positions shares no pixel; with ``stride < size`` neighbouring positions share
``size − stride`` columns, so the pixels alone already link neighbouring views.

Clutter is a **static background** B_v behind the whole video (as for a fixed camera):
either distractor patches (random Gaussian blobs of random sign, width and place) or a
white-noise background, scaled to unit root-mean-square and added with
contrast c relative to the object's root-mean-square value ρ,

    x_{v,p} = o_{k,p} + c ρ B_v (1 − m_p),

where m_p is the head's square in frame p (the head occludes the background).

With c = 0 the frames are the bare object (the "class-specific" view of the scene).

Used by the chapter "Temporal association and clutter" (Liao, Leibo & Poggio 2014,
arXiv:1409.3879).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from helpers.core.validation import check_real
from helpers.engine.heads import random_heads, render_heads

Tensor = torch.Tensor

CLUTTER_KINDS = ("patches", "noise")


@dataclass(frozen=True)
class Videos:
    """A set of videos, one head per video.

    Attributes:
        objects: (S, P, size, P·size) the bare object in every frame (no clutter).
        labels: (S,) the identity of the head in each video.
        positions: (P,) the position index of each frame, 0 … P−1.
        rms: the root-mean-square pixel value ρ of the bare objects, over all frames.
        stride: columns between the left edges of neighbouring squares (= size: no overlap).
    """

    objects: Tensor
    labels: Tensor
    positions: Tensor
    rms: float
    stride: int

    @property
    def n_positions(self) -> int:
        return int(self.positions.numel())

    def squares(self) -> Tensor:
        """(P, W) indicator of the columns of the head's square in the frame at each position."""
        H, W = self.objects.shape[-2:]
        x = torch.arange(W, device=self.objects.device)
        left = self.positions.to(self.objects.device)[:, None] * self.stride  # (P, 1)
        return ((x >= left) & (x < left + H)).to(self.objects.dtype)


def make_videos(n_objects: int, videos_per_object: int, *, n_positions: int = 8,
                size: int = 12, stride: int | None = None,
                angles: tuple[float, float] = (-60.0, 60.0), angle_jitter: float = 10.0,
                head_jitter: float = 0.08, object_seed: int, seed: int) -> Videos:
    """``videos_per_object`` videos of each of ``n_objects`` heads (see the module docstring).

    ``stride`` (default ``size``, no overlap) is the step between neighbouring squares; frames
    are ``size`` × ((P − 1)·stride + size).

    ``head_jitter`` is how far the heads differ (see :func:`helpers.engine.heads.random_heads`);
    ``object_seed`` fixes the heads (share it between training and test videos); ``seed`` the
    per-video angle jitter. Returns :class:`Videos` with S = n_objects · videos_per_object.
    """
    for name, value, low in (("n_objects", n_objects, 2), ("n_positions", n_positions, 2),
                             ("videos_per_object", videos_per_object, 1), ("size", size, 4)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    stride = size if stride is None else stride
    if isinstance(stride, bool) or not isinstance(stride, int) or not 1 <= stride <= size:
        raise ValueError(f"stride must be an int in [1, size={size}], got {stride!r}")
    if not angle_jitter >= 0:
        raise ValueError(f"angle_jitter must be non-negative, got {angle_jitter!r}")
    heads = random_heads(n_objects, seed=object_seed, jitter=head_jitter)
    gen = torch.Generator().manual_seed(int(seed))  # cpu: rendered on the CPU
    n_videos = n_objects * videos_per_object
    labels = torch.arange(n_objects).repeat_interleave(videos_per_object)  # cpu: (S,)
    sweep = torch.linspace(angles[0], angles[1], n_positions, dtype=torch.float64)  # cpu: (P,)
    jitter = torch.randn(n_videos, 1, generator=gen, dtype=torch.float64)  # cpu: rendered on CPU
    jitter = angle_jitter * jitter
    theta = sweep + jitter  # (S, P)
    shape = (n_videos, n_positions, size, (n_positions - 1) * stride + size)
    frames = torch.zeros(shape, dtype=torch.float64)  # cpu: rendered on the CPU
    for p in range(n_positions):  # P renders of all heads at once
        views = render_heads(heads, theta[:, p], size=size)  # (K, S, size, size)
        views = views[labels, torch.arange(n_videos)]  # cpu: (S, size, size): head k at its angle
        frames[:, p, :, p * stride:p * stride + size] = views
    rms = frames.pow(2).sum((-1, -2)).div(size * size).mean().sqrt().item()
    return Videos(frames, labels, torch.arange(n_positions), rms, stride)  # cpu: CPU renders


def object_templates(videos: Videos) -> Tensor:
    """Class-specific templates: each bare object with its square's mean removed, zero elsewhere.

    Returns (S, P, H, W). Removing the mean keeps a flat patch of background from matching
    every head equally well.
    """
    o = videos.objects
    H = o.shape[-2]
    box = videos.squares()[None, :, None, :]  # (1, P, 1, W)
    mean = o.sum((-1, -2), keepdim=True) / (H * H)
    return (o - mean) * box


def box_crops(videos: Videos, frames: Tensor, *, margin: float = 0.25) -> Tensor:
    """Realistic class-specific templates: each frame cut to a box around the head's square,
    widened by ``margin`` squares on either side, background inside the box kept, the box's
    mean removed, zero elsewhere.

    ``frames`` (S, P, H, W) are the (cluttered) frames of ``videos``. Unlike
    :func:`object_templates`, no mask of the object is used: the crop knows only roughly where
    the object is, as a detector's box would, and keeps the background around it.
    """
    check_real("margin", margin, low=0.0)
    _, P, H, W = frames.shape
    side = H  # the head's square is H × H
    centre = torch.arange(P, device=frames.device) * videos.stride + 0.5 * side  # (P,)
    x = torch.arange(W, device=frames.device) + 0.5  # (W,)
    box = ((x[None, :] - centre[:, None]).abs() < side * (0.5 + margin)).to(frames.dtype)
    box = box[None, :, None, :]  # (1, P, 1, W)
    mean = (frames * box).sum((-1, -2), keepdim=True) / (H * box.sum(-1, keepdim=True))
    return (frames - mean) * box


def frame_table(videos: Videos, n_label_videos: int) -> dict[str, Tensor]:
    """Flat per-frame bookkeeping for evaluation, frames in (video, position) order.

    Returns ``labels``, ``positions`` and ``labelled`` (N,): the first ``n_label_videos``
    videos of each object lend their position-0 frames for naming units; ``evaluated`` marks
    the frames used for scoring, positions 1 … P−1 of the other videos, never seen labelled.
    """
    S, P = videos.objects.shape[:2]
    per_object = S // (int(videos.labels.max()) + 1)
    if not 0 < n_label_videos < per_object:
        raise ValueError(f"n_label_videos must lie in (0, {per_object}), got {n_label_videos!r}")
    rank = (torch.arange(S) % per_object)[:, None].expand(S, P).reshape(-1)  # cpu: CPU draw
    positions = videos.positions[None].expand(S, P).reshape(-1)
    labels = videos.labels[:, None].expand(S, P).reshape(-1)
    naming = rank < n_label_videos
    labelled = naming & (positions == 0)
    evaluated = ~naming & (positions != 0)
    return {"labels": labels, "positions": positions, "labelled": labelled,
            "evaluated": evaluated}


def backgrounds(n: int, height: int, width: int, *, kind: str = "patches", n_patches: int = 12,
                seed: int) -> Tensor:
    """``n`` clutter backgrounds (n, height, width), each with zero mean and unit RMS.

    ``kind='patches'``: a sum of ``n_patches`` Gaussian blobs (random centre, width 0.5 to 2
    times ``height``/6 and sign), i.e. distractor patches; ``kind='noise'``: white noise.
    """
    if kind not in CLUTTER_KINDS:
        raise ValueError(f"kind must be one of {CLUTTER_KINDS}, got {kind!r}")
    gen = torch.Generator().manual_seed(int(seed))  # cpu: rendered on the CPU
    if kind == "noise":
        b = torch.randn(n, height, width, generator=gen, dtype=torch.float64)  # cpu: CPU draw
    else:
        cy = torch.rand(n, n_patches, 1, 1, generator=gen, dtype=torch.float64)  # cpu: CPU draw
        cy = height * cy
        cx = torch.rand(n, n_patches, 1, 1, generator=gen, dtype=torch.float64)  # cpu: CPU draw
        cx = width * cx
        s = height / 6 * (0.5 + 1.5 * torch.rand(n, n_patches, 1, 1, generator=gen,  # cpu: CPU draw
                                                  dtype=torch.float64))
        sign = torch.randn(n, n_patches, 1, 1, generator=gen, dtype=torch.float64)  # cpu: CPU draw
        sign = sign.sign()
        yy = torch.arange(height, dtype=torch.float64)[:, None]  # cpu: rendered on the CPU
        xx = torch.arange(width, dtype=torch.float64)[None, :]  # cpu: rendered on the CPU
        b = (sign * torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s**2))).sum(1)
    b = b - b.mean((-1, -2), keepdim=True)
    return b / b.pow(2).mean((-1, -2), keepdim=True).sqrt().clamp_min(1e-12)


def cluttered(videos: Videos, contrast: float, *, kind: str = "patches", seed: int) -> Tensor:
    """Frames x_{v,p} = o_{k,p} + c ρ B_v (1 − m_p), one static background per video.

    m_p is the square occupied by the head in frame p: the head occludes the background.
    Returns (S, P, H, W).
    """
    if not contrast >= 0:
        raise ValueError(f"contrast must be non-negative, got {contrast!r}")
    S, _, H, W = videos.objects.shape
    if contrast == 0:
        return videos.objects.clone()
    b = backgrounds(S, H, W, kind=kind, seed=seed)  # (S, H, W)
    behind = 1.0 - videos.squares().to(b)  # (P, W)
    return videos.objects + contrast * videos.rms * b[:, None] * behind[None, :, None, :]
