"""Separable data, batched logistic GD, and the hard-margin SVM against scikit-learn."""

import numpy as np
import pytest
import torch
from sklearn.svm import SVC

from helpers.topics import implicit_bias as ib


def test_separable_data_has_the_margin():
    X, y = ib.separable_data(60, 4, margin=0.3, seed=1)
    assert X.shape == (60, 4) and set(y.tolist()) == {-1.0, 1.0}
    svm = ib.hard_margin_svm(X, y)
    assert (y * (X @ svm)).min() >= 1 - 1e-6


def test_svm_matches_sklearn_hard_margin():
    X, y = ib.separable_data(40, 3, margin=0.2, seed=2)
    # sklearn's SVC always fits an intercept. Adding the mirrored points (-x, -y) makes the
    # problem symmetric through the origin, which forces the intercept to zero and leaves the
    # same hard-margin solution as the origin-constrained one.
    Xs = torch.cat([X, -X]).numpy()
    ys = torch.cat([y, -y]).numpy()
    ref = SVC(kernel="linear", C=1e8, tol=1e-10).fit(Xs, ys)
    assert abs(ref.intercept_[0]) < 1e-6
    w = ib.hard_margin_svm(X, y).numpy()
    assert np.allclose(w, ref.coef_[0], rtol=1e-4, atol=1e-6)


def test_svm_rejects_non_separable():
    X = torch.tensor([[1.0, 0.0], [1.0, 0.0]], dtype=torch.float64)
    y = torch.tensor([1.0, -1.0], dtype=torch.float64)
    with pytest.raises(ValueError, match="separable"):
        ib.hard_margin_svm(X, y)


def test_logistic_gd_batched_equals_single_and_turns_to_svm():
    data = [ib.separable_data(30, 3, margin=0.2, seed=s) for s in range(3)]
    X = torch.stack([a for a, _ in data])
    y = torch.stack([b for _, b in data])
    cps = [10, 1000, 20000]
    W = ib.logistic_gd(X, y, eta=2.0, checkpoints=cps)
    assert W.shape == (3, 3, 3)
    single = ib.logistic_gd(X[1], y[1], eta=2.0, checkpoints=cps)
    assert torch.allclose(W[:, 1], single, atol=1e-12)
    svm = torch.stack([ib.hard_margin_svm(a, b) for a, b in data])
    ang = ib.angle_degrees(W, svm[None])
    assert ang[-1].max() < 5 and ang[-1].mean() < ang[0].mean()
    assert (W[-1].norm(dim=-1) > W[1].norm(dim=-1)).all()


def test_logistic_gd_equals_the_plain_update():
    """Oracle: w ← w + (η/n) Σ_i σ(−y_i x_iᵀw) y_i x_i, written out per problem."""
    X, y = ib.separable_data(12, 3, margin=0.1, seed=4)
    w0 = torch.tensor([0.3, -0.2, 0.1], dtype=torch.float64)
    W = ib.logistic_gd(torch.stack([X, -X]), torch.stack([y, y]), eta=0.7,
                       checkpoints=[1, 7, 50], w0=w0)
    for b, sign in enumerate((1, -1)):
        w, ref = w0.clone(), []
        for t in range(1, 51):
            w = w + 0.7 / 12 * sum(torch.sigmoid(-y[i] * (sign * X[i]) @ w) * y[i] * sign * X[i]
                                   for i in range(12))
            if t in (1, 7, 50):
                ref.append(w)
        assert torch.allclose(W[:, b], torch.stack(ref), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kwargs,match", [
    (dict(eta=0.0, checkpoints=[1]), "eta"), (dict(eta=1.0, checkpoints=[5, 5]), "checkpoints"),
    (dict(eta=1.0, checkpoints=[1], w0=torch.zeros(3)), "w0"),
    (dict(eta=1.0, checkpoints=[1], w0=[0.0, 0.0]), "w0"),
])
def test_logistic_gd_bad_input(kwargs, match):
    X, y = ib.separable_data(10, 2, seed=0)
    with pytest.raises(ValueError, match=match):
        ib.logistic_gd(X, y, **kwargs)
    with pytest.raises(ValueError, match="labels"):
        ib.logistic_gd(X, y * 2, eta=1.0, checkpoints=[1])


def test_angle_degrees():
    a = torch.tensor([1.0, 0.0])
    assert ib.angle_degrees(a, torch.tensor([0.0, 2.0])).item() == pytest.approx(90)
    assert ib.angle_degrees(a, torch.tensor([3.0, 0.0])).item() == pytest.approx(0, abs=1e-6)
