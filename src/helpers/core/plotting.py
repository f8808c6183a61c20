"""One figure style for the whole book, and small plotting helpers every chapter shares.

Introduced in the chapter "Implicit bias of gradient descent". Chapters call
:func:`use_book_style` once (through :func:`helpers.core.chapter.start_chapter`) and build
figures with
:func:`subplots`, so every figure has the same size, fonts, grid and colours.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np

#: Colour-blind-safe palette (Okabe & Ito), used in this order by every figure.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442",
           "#000000")

BOOK_STYLE = {
    "figure.figsize": (6.4, 3.6),
    "figure.dpi": 100,
    "savefig.dpi": 150,
    "savefig.bbox": "tight",
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.prop_cycle": mpl.cycler(color=PALETTE),
    "legend.frameon": False,
    "lines.linewidth": 1.8,
    "image.cmap": "viridis",
}


def use_book_style() -> None:
    """Apply ``BOOK_STYLE`` to matplotlib's global rcParams."""
    mpl.rcParams.update(BOOK_STYLE)


def subplots(ncols: int = 1, nrows: int = 1, *, width: float = 3.4, height: float = 3.0,
             **kwargs) -> tuple[plt.Figure, np.ndarray]:
    """A figure of ``nrows x ncols`` panels, each ``width x height`` inches; axes always 2-D-flat.

    Returns ``(fig, axes)`` with ``axes`` a flat array (length ``nrows * ncols``).
    """
    if ncols < 1 or nrows < 1:
        raise ValueError(f"ncols and nrows must be positive, got ncols={ncols}, nrows={nrows}")
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows),
                             squeeze=False, layout="constrained", **kwargs)
    return fig, axes.ravel()


def label(ax: plt.Axes, xlabel: str, ylabel: str, title: str | None = None) -> None:
    """Set both axis labels (every book figure has them) and an optional title.

    Returns None on purpose: as the last line of a figure cell it adds no text output, which
    would otherwise be captioned as a second copy of the figure.
    """
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)


def reference_line(ax: plt.Axes, value: float, *, axis: str = "y", text: str | None = None,
                   color: str = "0.3") -> None:
    """A dashed horizontal (``axis='y'``) or vertical (``'x'``) line marking a predicted value."""
    if axis not in ("x", "y"):
        raise ValueError(f"axis must be 'x' or 'y', got {axis!r}")
    line = ax.axhline if axis == "y" else ax.axvline
    line(value, color=color, linestyle="--", linewidth=1.0, label=text)


def spectrum_plot(ax: plt.Axes, eigenvalues: Sequence[float] | np.ndarray, *,
                  floor: float = 1e-16) -> None:
    """Sorted absolute eigenvalues on a log scale against their rank; below ``floor`` clipped."""
    vals = np.sort(np.abs(np.asarray(eigenvalues, dtype=float)))[::-1]
    ax.semilogy(np.arange(1, len(vals) + 1), np.maximum(vals, floor), ".", markersize=4)
    label(ax, "eigenvalue index (sorted)", "|eigenvalue|")
