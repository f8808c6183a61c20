"""Data sets every chapter can use offline: scikit-learn's bundled sets and synthetic tasks.

Nothing here downloads anything. Introduced in the chapter "Implicit bias of gradient descent"
(synthetic data) and shared by every chapter that trains on digits.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Split:
    """A train/test split as tensors on one device.

    Attributes:
        x_train, x_test: (n, d) float inputs; y_train, y_test: (n,) int64 class labels.
        n_classes: number of classes.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    n_classes: int


def _split(x: np.ndarray, y: np.ndarray, *, test_fraction: float, seed: int,
           standardize: bool, dtype: torch.dtype, device: torch.device | str) -> Split:
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(x))
    n_test = int(round(test_fraction * len(x)))
    test, train = order[:n_test], order[n_test:]
    x = x.astype(np.float64)
    if standardize:  # statistics of the training part only
        mu, sd = x[train].mean(0), x[train].std(0)
        x = (x - mu) / np.where(sd > 0, sd, 1.0)
    as_x = lambda a: torch.as_tensor(a, dtype=dtype, device=device)  # noqa: E731
    as_y = lambda a: torch.as_tensor(a, dtype=torch.int64, device=device)  # noqa: E731
    return Split(as_x(x[train]), as_y(y[train]), as_x(x[test]), as_y(y[test]),
                 int(y.max()) + 1)


def digits(*, test_fraction: float = 0.3, seed: int = 0, standardize: bool = True,
           dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> Split:
    """scikit-learn's bundled 8×8 digits (1797 images, 10 classes), split and standardised.

    Pixels are standardised with the training part's mean and standard deviation; the split
    is a seeded permutation.
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return _split(bunch.data, bunch.target, test_fraction=test_fraction, seed=seed,
                  standardize=standardize, dtype=dtype, device=device)


def bundled(name: str, **kwargs) -> Split:
    """One of scikit-learn's bundled classification sets by name: ``digits``, ``iris``,
    ``wine`` or ``breast_cancer``; keyword arguments as for :func:`digits`."""
    from sklearn import datasets

    loaders = {"digits": datasets.load_digits, "iris": datasets.load_iris,
               "wine": datasets.load_wine, "breast_cancer": datasets.load_breast_cancer}
    if name not in loaders:
        raise ValueError(f"name must be one of {sorted(loaders)}, got {name!r}")
    bunch = loaders[name]()
    opts = dict(test_fraction=0.3, seed=0, standardize=True, dtype=torch.float32,
                device="cpu") | kwargs
    return _split(bunch.data, bunch.target, **opts)
