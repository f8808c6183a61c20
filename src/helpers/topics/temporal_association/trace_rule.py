"""Földiák's trace rule over a layer of stored templates, and the measures of invariance.

**First layer (templates).** A frame x is compared with M stored templates t_j by the cosine
s_j = ⟨x, t_j⟩ / (‖x‖ ‖t_j‖); only the ``keep`` largest responses survive and the code is
normalised, r = top_keep(s) / ‖top_keep(s)‖. Whole-frame templates are training frames,
background included; class-specific templates are the bare object (Liao, Leibo & Poggio
2014, arXiv:1409.3879).

**Second layer (trace rule).** U winner-take-all units with weights W (U, M) see the codes
of each video in temporal order. The activity trace h and the output trace ȳ follow

    h_t = (1 − δ) h_{t−1} + δ W r_t,      y_t = onehot(argmax h_t),
    ȳ_t = (1 − δ) ȳ_{t−1} + δ y_t,        W ← W + η ȳ_t (r_t − W)      (row by row),

Földiák's rule (Földiák 1991): the unit that has been winning lately keeps learning, so the
frames of one video, which share an object but not a position, are bound to one unit. δ = 1
removes the trace and leaves plain competitive learning. Traces restart at each video (a cut).

Introduced in the chapter "Temporal association and clutter".
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from helpers.core.progress import progress
from helpers.core.validation import check_choice
from helpers.topics.temporal_association.videos import (
    Videos,
    box_crops,
    cluttered,
    frame_table,
    object_templates,
)

Tensor = torch.Tensor


def _check_int(name: str, value, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")


def _cosines(frames: Tensor, templates: Tensor) -> Tensor:
    if frames.ndim >= 2 and templates.ndim >= 3 and frames.shape[-2:] == templates.shape[-2:]:
        frames, templates = frames.flatten(-2), templates.flatten(-2)
    templates = templates.reshape(-1, templates.shape[-1])
    if frames.shape[-1] != templates.shape[-1]:
        raise ValueError(f"frames and templates must have the same length, got "
                         f"{frames.shape[-1]} and {templates.shape[-1]}")
    x = frames / frames.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    t = templates / templates.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return x @ t.T


def template_codes(frames: Tensor, templates: Tensor, *, keep: int) -> Tensor:
    """First-layer codes r = top_keep(cos(x, t_j)) / ‖·‖: (..., D) × (M, D) → (..., M).

    Frames may have any leading shape; images are flattened over their last two axes
    when ``frames`` and ``templates`` have the same trailing image shape.
    """
    return _top_codes(_cosines(frames, templates), keep)


def _top_codes(s: Tensor, keep: int) -> Tensor:
    """top_keep(s) / ‖top_keep(s)‖ along the last axis of the cosines s (..., M)."""
    _check_int("keep", keep, 1)
    if keep > s.shape[-1]:
        raise ValueError(f"keep must be at most the number of templates, got {keep}")
    top = s.topk(keep, dim=-1)
    r = torch.zeros_like(s).scatter(-1, top.indices, top.values.clamp_min(0))
    return r / r.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def foldiak_trace(codes: Tensor, n_units: int, *, delta: float, eta: float = 0.1,
                  epochs: int = 10, seed: int) -> Tensor:
    """Train U winner-take-all units with Földiák's trace rule (module docstring).

    Args:
        codes: (S, T, M) first-layer codes of S videos of T frames each, in temporal order.
        n_units: U, the number of second-layer units.
        delta: trace rate δ in (0, 1]; δ = 1 is competitive learning without a trace.
        eta: learning rate η in (0, 1].
        epochs: passes over the videos, in a fresh random order each time, each video
            played forwards or backwards at random.
        seed: seeds the video order and the initial weights (U random training codes plus
            a small positive jitter that breaks ties).

    Returns:
        W: (U, M) the learned weights.
    """
    if codes.ndim != 3:
        raise ValueError(f"codes must have shape (S, T, M), got {tuple(codes.shape)}")
    _check_int("n_units", n_units, 1)
    _check_int("epochs", epochs, 1)
    if not 0 < delta <= 1:
        raise ValueError(f"delta must lie in (0, 1], got {delta!r}")
    if not 0 < eta <= 1:
        raise ValueError(f"eta must lie in (0, 1], got {eta!r}")
    S, T, M = codes.shape
    gen = torch.Generator().manual_seed(int(seed))  # cpu: CPU draws/loop
    flat = codes.reshape(S * T, M)
    pick = torch.randint(S * T, (n_units,), generator=gen)  # cpu: CPU draws/loop
    noise = torch.rand(n_units, M, generator=gen, dtype=codes.dtype)  # cpu: CPU draws
    W = flat[pick] + 0.01 * noise / M**0.5
    for _ in range(epochs):
        backwards = torch.rand(S, generator=gen) < 0.5  # cpu: CPU draws/loop
        for s in torch.randperm(S, generator=gen).tolist():  # cpu: CPU draws/loop
            video = codes[s].flip(0) if backwards[s] else codes[s]  # objects move both ways
            h = torch.zeros(n_units, dtype=codes.dtype)  # cpu: CPU draws/loop
            y_bar = torch.zeros(n_units, dtype=codes.dtype)  # cpu: CPU draws/loop
            for r in video:
                h = (1 - delta) * h + delta * (W @ r)
                y_bar = (1 - delta) * y_bar
                y_bar[h.argmax()] += delta
                W += eta * y_bar[:, None] * (r - W)
    return W


def _draws(seed: int, S: int, T: int, M: int, n_units: int, epochs: int,
           dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor]:
    """One run's random choices, drawn from ``seed`` in the order :func:`foldiak_trace` draws them.

    Returns the picked initial codes (U,), the jitter (U, M) and the frames played, as flat
    indices s·T + t into the run's codes, (epochs·S, T): videos in each epoch's order, each
    forwards or backwards.
    """
    gen = torch.Generator().manual_seed(int(seed))  # cpu: CPU draws/loop
    pick = torch.randint(S * T, (n_units,), generator=gen)  # cpu: CPU draws/loop
    jitter = 0.01 * torch.rand(n_units, M, generator=gen, dtype=dtype) / M**0.5  # cpu: CPU draws
    t, played = torch.arange(T), []  # cpu: CPU draws/loop
    for _ in range(epochs):
        backwards = torch.rand(S, generator=gen) < 0.5  # cpu: CPU draws/loop
        order = torch.randperm(S, generator=gen)  # cpu: CPU draws/loop
        played.append(order[:, None] * T + torch.where(backwards[order, None], T - 1 - t, t))
    return pick, jitter, torch.cat(played)


def _per_run(name: str, value, R: int, codes: Tensor) -> Tensor:
    """A rate given once or once per run, as an (R, 1) tensor in (0, 1]."""
    rate = torch.as_tensor(value, dtype=codes.dtype).flatten()  # cpu: CPU draws/loop
    if rate.numel() not in (1, R):
        raise ValueError(f"{name} must be one value or one per run ({R}), got {rate.numel()}")
    if not ((rate > 0) & (rate <= 1)).all():
        raise ValueError(f"{name} must lie in (0, 1], got {value!r}")
    return rate.expand(R).to(codes.device)[:, None]


def foldiak_trace_batched(codes: Tensor, n_units: int, *, delta: float | Sequence[float],
                          eta: float | Sequence[float] = 0.1, epochs: int = 10,
                          seeds: Sequence[int]) -> Tensor:
    """R independent runs of :func:`foldiak_trace`, trained together with a leading run axis.

    Every step updates all runs at once: h ← (1 − δ) h + δ W r by a batched matrix product,
    the winner's trace ȳ[argmax h] += δ by a scatter over runs, and W ← W + η ȳ (r − W). Run r
    draws its initial weights, video order and directions from ``seeds[r]`` exactly as
    :func:`foldiak_trace` does, so ``foldiak_trace_batched(codes, U, delta=δ,
    seeds=s)[r]`` equals ``foldiak_trace(codes[r], U, delta=δ[r], seed=s[r])`` to rounding.

    Args:
        codes: (R, S, T, M) codes of each run, or (S, T, M) shared by all runs.
        n_units: U, the number of second-layer units.
        delta: trace rate δ in (0, 1], one value or one per run.
        eta: learning rate η in (0, 1], one value or one per run.
        epochs: passes over the videos.
        seeds: one seed per run; R = len(seeds).

    Returns:
        W: (R, U, M) the learned weights, on the device of ``codes``.
    """
    seeds = [int(s) for s in seeds]
    R = len(seeds)
    if R < 1:
        raise ValueError("seeds must name at least one run")
    if codes.ndim == 3:
        codes = codes.expand(R, *codes.shape)
    if codes.ndim != 4 or codes.shape[0] != R:
        raise ValueError(f"codes must have shape (R, S, T, M) with R = len(seeds) = {R}, or "
                         f"(S, T, M), got {tuple(codes.shape)}")
    _check_int("n_units", n_units, 1)
    _check_int("epochs", epochs, 1)
    delta, eta = _per_run("delta", delta, R, codes), _per_run("eta", eta, R, codes)  # (R, 1)
    _, S, T, M = codes.shape
    draws = [_draws(s, S, T, M, n_units, epochs, codes.dtype) for s in seeds]
    pick, jitter, played = (torch.stack(d).to(codes.device) for d in zip(*draws, strict=True))
    flat = codes.reshape(R, S * T, M)
    runs = torch.arange(R, device=codes.device)[:, None]
    W = flat[runs, pick] + jitter  # (R, U, M)
    fade = 1 - delta  # (R, 1)
    for v in progress(range(played.shape[1]), desc="trace rule"):
        video = flat[runs, played[:, v]]  # (R, T, M): the v-th video of every run
        h = torch.zeros(R, n_units, dtype=codes.dtype, device=codes.device)
        y_bar = torch.zeros_like(h)
        for t in range(T):
            r = video[:, t, None, :]  # (R, 1, M)
            h = fade * h + delta * torch.bmm(r, W.transpose(1, 2))[:, 0]  # (R, U)
            y_bar = fade * y_bar
            y_bar.scatter_add_(1, h.argmax(1, keepdim=True), delta)  # each run's winner
            W.lerp_(r, (eta * y_bar)[:, :, None])  # W + η ȳ (r − W), row by row
    return W


def winners(W: Tensor, codes: Tensor) -> Tensor:
    """The winning unit argmax_i ⟨w_i, r⟩ of every code: (..., M) → (...)."""
    return (codes @ W.T).argmax(-1)


def label_accuracy(W: Tensor, codes: Tensor, labels: Tensor, labelled: Tensor) -> float:
    """Accuracy on the unlabelled frames after naming each unit from the labelled ones.

    Each unit is named after the object whose labelled frames excite it most in total,
    argmax_k Σ_{labelled n of object k} ⟨w_i, r_n⟩ (a unit that none of them excites names no
    object, and the frames it wins count as errors). Args: codes (N, M), labels (N,),
    labelled (N,) bool. Chance is 1 / (number of objects).
    """
    if labelled.dtype != torch.bool or labelled.shape != labels.shape:
        raise TypeError("labelled must be a bool tensor shaped like labels")
    if labelled.all() or not labelled.any():
        raise ValueError("labelled must mark some, but not all, frames")
    win = winners(W, codes)
    n_obj = int(labels.max()) + 1
    onehot = torch.nn.functional.one_hot(labels[labelled], n_obj).to(codes.dtype)  # (L, K)
    excite = W @ codes[labelled].T @ onehot  # (U, K): summed response to each object's views
    name = torch.where(excite.amax(1) > 1e-6, excite.argmax(1), -1)
    return (name[win[~labelled]] == labels[~labelled]).double().mean().item()


def invariance_index(responses: Tensor, labels: Tensor, positions: Tensor) -> float:
    """Mean cosine similarity of response vectors across positions: same − different object.

    Over all pairs of frames at different positions, the mean cosine of their (N, U)
    response vectors when they show the same object minus when they show different ones:
    1 for a perfectly invariant and selective code, about 0 for a code blind to identity.
    """
    z = responses / responses.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    sim = z @ z.T
    other_place = positions[:, None] != positions[None, :]
    same = labels[:, None] == labels[None, :]
    return (sim[other_place & same].mean() - sim[other_place & ~same].mean()).item()


def match_purity(codes: Tensor, template_labels: Tensor, labels: Tensor) -> float:
    """Fraction of the kept template matches (non-zero code entries) showing the frame's object."""
    kept = codes > 0  # (N, M)
    same = template_labels[None, :] == labels[:, None]
    return ((kept & same).sum() / kept.sum().clamp_min(1)).item()


@dataclass(frozen=True)
class TraceResult:
    """One run of :func:`trace_experiment` (accuracies on frames at unlabelled positions)."""

    accuracy: float  # trace rule, units named at position 0
    invariance: float  # invariance_index of the second-layer responses, all test frames
    purity: float  # match_purity of the test codes
    pooling: float  # identity pooling (max over each object's templates), no learning
    W: Tensor  # (U, M) learned weights


EXPERIMENT_DEFAULTS: dict[str, Any] = {"templates": "whole", "delta": 0.2, "keep": 6,
                                       "n_units": 10, "epochs": 15, "kind": "patches",
                                       "shuffle": False, "margin": 0.25}
#: The template layers, training frames ("whole"), the bare objects under an oracle mask
#: ("object"), or the training frames cut to the object's square ("box").
TEMPLATES = ("whole", "object", "box")


def _coded(train: Videos, test: Videos, contrast: float, *, templates: str, keep: int,
           kind: str, seed: int, shuffle: bool = False, margin: float = 0.25
           ) -> dict[str, Any]:
    """One run's inputs: clutter, template layer, training codes (S, P, M), test codes (N, M),
    and the accuracy of pooling by identity (which needs no learning). ``shuffle=True``
    scatters the training frames over the videos at random (the trace rule's control: the
    same frames without temporal continuity). ``margin`` widens the ``"box"`` templates (see
    :func:`helpers.topics.temporal_association.videos.box_crops`)."""
    check_choice("templates", templates, TEMPLATES)
    x_train = cluttered(train, contrast, kind=kind, seed=seed + 1)  # (S, P, H, W)
    x_test = cluttered(test, contrast, kind=kind, seed=seed + 2)
    stored = {"whole": x_train, "object": object_templates(train),
              "box": box_crops(train, x_train, margin=margin)}[templates]
    t_labels = train.labels[:, None].expand(-1, train.n_positions).reshape(-1)  # (M,)
    table = frame_table(test, (len(test.labels) // (int(test.labels.max()) + 1)) // 2)
    cos = _cosines(x_test.flatten(0, 1), stored.flatten(0, 1))  # (N, M)
    n_obj = int(t_labels.max()) + 1
    pooled = torch.stack([cos[:, t_labels == k].amax(1) for k in range(n_obj)], 1)
    pooling = (pooled.argmax(1) == table["labels"])[table["evaluated"]].double().mean().item()
    codes = template_codes(x_train, stored, keep=keep)  # (S, P, M)
    if shuffle:
        gen = torch.Generator().manual_seed(int(seed) + 3)  # cpu: same order on every device
        order = torch.randperm(codes.shape[0] * codes.shape[1], generator=gen)  # cpu: CPU draws
        codes = codes.flatten(0, 1)[order.to(codes.device)].view_as(codes)
    return {"train": codes, "test": _top_codes(cos, keep),
            "t_labels": t_labels, "table": table, "pooling": pooling}


def _scored(W: Tensor, coded: dict[str, Any]) -> TraceResult:
    """Score learned weights W (U, M) on the test codes of :func:`_coded`."""
    table, codes = coded["table"], coded["test"]
    use = table["labelled"] | table["evaluated"]
    labels, positions = table["labels"], table["positions"]
    accuracy = label_accuracy(W, codes[use], labels[use], table["labelled"][use])
    return TraceResult(accuracy, invariance_index(codes @ W.T, labels, positions),
                       match_purity(codes, coded["t_labels"], labels), coded["pooling"], W)


def trace_experiment(train: Videos, test: Videos, contrast: float, *, templates: str = "whole",
                     delta: float = 0.2, keep: int = 6, n_units: int = 10, epochs: int = 15,
                     kind: str = "patches", seed: int) -> TraceResult:
    """Clutter the videos, build the template layer, train the trace rule, and score it.

    ``templates='whole'`` stores the cluttered training frames; ``'object'`` the bare,
    centred objects (class-specific). Half of the test videos of each object name the
    units from their position-0 frames; the other half are scored at positions 1 … P−1.
    Pooling by identity scores object k by max_j cos(x, t_j) over k's templates.
    """
    coded = _coded(train, test, contrast, templates=templates, keep=keep, kind=kind, seed=seed)
    W = foldiak_trace_batched(coded["train"], n_units, delta=delta, epochs=epochs, seeds=[seed])
    return _scored(W[0], coded)


def trace_sweep(train: Videos, test: Videos, settings: Sequence[Mapping[str, Any]], *,
                runs: int = 5, seed: int, batch_size: int = 16) -> list[dict[str, Any]]:
    """:func:`trace_runs` for several settings, their trainings batched together.

    Each setting is a dict with ``contrast`` and any keyword of :func:`trace_experiment`
    (defaults in ``EXPERIMENT_DEFAULTS``). Run r of every setting uses seed ``seed + 1000 r``,
    as :func:`trace_runs` does; the len(settings) · runs trainings are done by calls of
    :func:`foldiak_trace_batched` on at most ``batch_size`` trainings of one (n_units, epochs)
    each, which bounds the memory held by their codes (every run is independent, so the
    grouping does not change the result). Returns, per setting, the
    mean accuracy, invariance, purity and pooling over its runs, (keys ``<name>_se``) their
    standard errors over runs, sd/√runs (NaN for one run), and (keys ``<name>_runs``) the
    per-run values as a list.
    """
    _check_int("runs", runs, 1)
    _check_int("batch_size", batch_size, 1)
    jobs = []  # (setting index, full keyword set, seed) of every training
    for i, setting in enumerate(settings):
        unknown = set(setting) - set(EXPERIMENT_DEFAULTS) - {"contrast"}
        if unknown or "contrast" not in setting:
            raise TypeError(f"settings[{i}] must give contrast and only keywords of "
                            f"trace_experiment, got {sorted(setting)}")
        jobs += [(i, {**EXPERIMENT_DEFAULTS, **setting}, seed + 1000 * r) for r in range(runs)]
    results: list[list[TraceResult]] = [[] for _ in settings]
    groups: dict[tuple[int, int], list] = {}  # trainings of one (n_units, epochs)
    for job in jobs:
        groups.setdefault((job[1]["n_units"], job[1]["epochs"]), []).append(job)
    for (n_units, epochs), same in groups.items():
        for start in range(0, len(same), batch_size):
            batch = same[start:start + batch_size]
            coded = [_coded(train, test, kw["contrast"], templates=kw["templates"],
                            keep=kw["keep"], kind=kw["kind"], seed=s, shuffle=kw["shuffle"],
                            margin=kw["margin"]) for _, kw, s in batch]
            W = foldiak_trace_batched(torch.stack([c["train"] for c in coded]), n_units,
                                      delta=[kw["delta"] for _, kw, _ in batch], epochs=epochs,
                                      seeds=[s for _, _, s in batch])
            for (i, _, _), w, c in zip(batch, W, coded, strict=True):
                results[i].append(_scored(w, c))
    out = []
    for group in results:
        row = {}
        for key in ("accuracy", "invariance", "purity", "pooling"):
            values = torch.tensor([getattr(res, key) for res in group],  # cpu: R numbers
                                  dtype=torch.float64)
            row[key], row[f"{key}_runs"] = values.mean().item(), values.tolist()
            row[f"{key}_se"] = (values.std() / runs**0.5).item() if runs > 1 else math.nan
        out.append(row)
    return out


def trace_runs(train: Videos, test: Videos, contrast: float, *, runs: int = 5, seed: int,
               **kwargs) -> dict[str, Any]:
    """Mean accuracy, invariance, purity and pooling over ``runs`` independent trainings.

    Each run draws its own backgrounds, unit initialisation and video order (seeds
    ``seed + 1000 r``); keyword arguments go to :func:`trace_experiment`. The runs are
    trained together (see :func:`trace_sweep`).
    """
    return trace_sweep(train, test, [{"contrast": contrast, **kwargs}], runs=runs, seed=seed)[0]
