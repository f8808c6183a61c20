"""AIPW, coverage and cross-fitted nuisance networks (chapter "semiparametric")."""

import math

import pytest
import torch

import helpers.topics.semiparametric as sp


def test_simulation_has_known_effect_and_overlap():
    sim = sp.simulate(20, 2000, seed=0)
    assert sim.x.shape == (20, 2000, 5) and sim.d.shape == sim.y.shape == (20, 2000)
    assert sim.e.min() >= 0.1 and sim.e.max() <= 0.9
    # the individual effects average to the ATE within sampling error (sd of 0.5 x3 is 0.5)
    effect = (sim.mu1 - sim.mu0).mean()
    assert abs(effect - sim.ate) < 4 * 0.5 / math.sqrt(20 * 2000)


def test_aipw_matches_hand_formula_and_se():
    gen = torch.Generator().manual_seed(1)
    y, mu0, mu1 = (torch.randn(3, 50, generator=gen, dtype=torch.float64) for _ in range(3))
    d = (torch.rand(3, 50, generator=gen) < 0.5).double()
    e = torch.full((3, 50), 0.4, dtype=torch.float64)
    tau, se = sp.aipw(y, d, mu0, mu1, e)
    psi = mu1 - mu0 + d * (y - mu1) / 0.4 - (1 - d) * (y - mu0) / 0.6
    assert torch.allclose(tau, psi.mean(1)) and torch.allclose(se, psi.std(1) / math.sqrt(50))
    with pytest.raises(ValueError, match="e must"):
        sp.aipw(y, d, mu0, mu1, torch.zeros_like(e))
    with pytest.raises(ValueError, match="shape"):
        sp.aipw(y[0], d[0], mu0[0], mu1[0], e[0])


def test_oracle_aipw_is_unbiased_and_covers():
    R = 400
    sim = sp.simulate(R, 400, seed=2)
    tau, se = sp.aipw(sim.y, sim.d, sim.mu0, sim.mu1, sim.e)
    assert abs(tau.mean() - sim.ate) < 4 * tau.std() / math.sqrt(R)
    c = sp.coverage(tau, se, sim.ate)
    assert abs(c - 0.95) < 4 * math.sqrt(0.95 * 0.05 / R)


def test_double_robustness_with_one_wrong_nuisance():
    R = 300
    sim = sp.simulate(R, 400, seed=3)
    half = torch.full_like(sim.e, 0.5)
    zero = torch.zeros_like(sim.mu0)
    for mu0, mu1, e in [(zero, zero, sim.e), (sim.mu0, sim.mu1, half)]:
        tau, _ = sp.aipw(sim.y, sim.d, mu0, mu1, e)
        assert abs(tau.mean() - sim.ate) < 4 * tau.std() / math.sqrt(R)
    # both wrong: biased like the naive estimator
    tau, _ = sp.aipw(sim.y, sim.d, zero, zero, half)
    naive = sp.difference_in_means(sim.y, sim.d)
    assert tau.mean() - sim.ate > 0.5 and naive.mean() - sim.ate > 0.5


def test_coverage_against_hand_count():
    tau = torch.tensor([0.0, 1.0, 2.0, 5.0])
    se = torch.ones(4)
    assert sp.coverage(tau, se, 1.0) == 0.75  # |τ − 1| ≤ 1.96 for three of four
    with pytest.raises(ValueError, match="level"):
        sp.coverage(tau, se, 1.0, level=1.0)


def test_cross_fit_uses_the_other_fold():
    # with a constant-outcome replication, predictions on fold 1 come from the net fitted on
    # fold 0: shift fold 0's outcomes and only fold 1's predictions move
    sim = sp.simulate(2, 40, seed=4)
    cfg = sp.NuisanceConfig(steps_outcome=100, lr_outcome=0.05, steps_propensity=10)
    mu0, mu1, e = sp.cross_fit(sim, cfg, seed=0)
    assert mu0.shape == mu1.shape == e.shape == (2, 40)
    assert (e >= cfg.clip).all() and (e <= 1 - cfg.clip).all()
    shifted = sp.Simulation(sim.x, sim.d, sim.y + torch.cat([torch.full((2, 20), 3.0),
                                                             torch.zeros(2, 20)], 1).double(),
                            sim.mu0, sim.mu1, sim.e, sim.ate)
    mu0_s, _, _ = sp.cross_fit(shifted, cfg, seed=0)
    assert torch.allclose(mu0_s[:, :20], mu0[:, :20], atol=1e-5)
    assert (mu0_s[:, 20:] - mu0[:, 20:]).mean() > 1.5
    with pytest.raises(ValueError, match="even"):
        sp.cross_fit(sp.simulate(1, 41, seed=0), cfg)


def test_cross_fit_smoke_recovers_effect():
    R = 40
    sim = sp.simulate(R, 400, seed=5)
    tau, se = sp.aipw(sim.y, sim.d, *sp.cross_fit(sim, seed=5))
    assert abs(tau.mean() - sim.ate) < 4 * tau.std() / math.sqrt(R) + 0.05
    assert sp.coverage(tau, se, sim.ate) > 0.7


def test_without_cross_fitting_each_fold_is_predicted_by_its_own_net():
    # shift fold 0's outcomes: without cross-fitting only fold 0's predictions move
    sim = sp.simulate(2, 40, seed=4)
    cfg = sp.NuisanceConfig(steps_outcome=100, lr_outcome=0.05, steps_propensity=10)
    mu0, _, _ = sp.cross_fit(sim, cfg, seed=0, cross=False)
    shifted = sp.Simulation(sim.x, sim.d, sim.y + torch.cat([torch.full((2, 20), 3.0),
                                                             torch.zeros(2, 20)], 1).double(),
                            sim.mu0, sim.mu1, sim.e, sim.ate)
    mu0_s, _, _ = sp.cross_fit(shifted, cfg, seed=0, cross=False)
    assert torch.allclose(mu0_s[:, 20:], mu0[:, 20:], atol=1e-5)
    assert (mu0_s[:, :20] - mu0[:, :20]).mean() > 1.5


def test_clipped_fraction_counts_both_bounds():
    e = torch.tensor([[0.01, 0.5, 0.99, 0.2]], dtype=torch.float64)
    assert sp.clipped_fraction(e, 0.01) == 0.5
    with pytest.raises(ValueError, match="n"):
        sp.simulate(2, 3)


def test_grown_networks_deepen_and_widen_with_n():
    shapes = {n: sp.grown(n).hidden for n in (250, 500, 1000, 2000, 4000)}
    assert shapes[250] == (13, 13) and shapes[500] == (16, 16) and shapes[1000] == (19, 19)
    assert shapes[2000] == (23, 23, 23) and shapes[4000] == (27,) * 4
    assert sp.grown(500, steps_outcome=7).steps_outcome == 7
    with pytest.raises(ValueError, match="n"):
        sp.grown(2)


def test_n_sweep_at_tiny_size_covers_the_full_mode_path():
    # several sizes, each with its own grown networks, as the full mode runs it
    points = sp.n_sweep([40, 80, 120], 3, seed=1, steps_outcome=5, steps_propensity=2)
    assert [pt.n for pt in points] == [40, 80, 120]
    assert [pt.nuisance.hidden for pt in points] == [sp.grown(n).hidden for n in (40, 80, 120)]
    for pt in points:
        assert pt.tau.shape == pt.se.shape == pt.naive.shape == (3,)
        assert math.isclose(pt.root_n_sd(), math.sqrt(pt.n) * pt.tau.std().item())
        rmse = math.sqrt(pt.n) * ((pt.naive - pt.ate) ** 2).mean().sqrt().item()
        assert math.isclose(pt.root_n_rmse(pt.naive), rmse)
    with pytest.raises(ValueError, match="ns"):
        sp.n_sweep([40, 2], 3)


def test_efficient_sd_matches_the_oracle_spread():
    # the sd of √n(τ̂ − τ) with the true nuisances over replications is √Var ψ
    sim = sp.simulate(400, 400, seed=6)
    tau, _ = sp.aipw(sim.y, sim.d, sim.mu0, sim.mu1, sim.e)
    spread = math.sqrt(400) * tau.std().item()
    assert abs(spread / sp.efficient_sd(n=100_000, seed=1) - 1) < 4 / math.sqrt(2 * 399)


def test_constant_nuisances_are_the_other_folds_means():
    sim = sp.simulate(2, 8, seed=7)
    mu0, mu1, e = sp.constant_nuisances(sim)
    d, y = sim.d[0, 4:], sim.y[0, 4:]  # fold 1 of replication 0 predicts on fold 0
    assert torch.allclose(e[0, :4], d.mean().expand(4))
    assert torch.allclose(mu1[0, :4], ((y * d).sum() / d.sum()).expand(4))
    assert torch.allclose(mu0[0, :4], ((y * (1 - d)).sum() / (1 - d).sum()).expand(4))
    with pytest.raises(ValueError, match="even"):
        sp.constant_nuisances(sp.simulate(1, 9, seed=0))


def test_scores_sweep_point_and_fitting_once_for_both_evaluations():
    sim = sp.simulate(3, 40, seed=8)
    psi = sp.aipw_scores(sim.y, sim.d, sim.mu0, sim.mu1, sim.e)
    tau, se = sp.aipw(sim.y, sim.d, sim.mu0, sim.mu1, sim.e)
    point = sp.SweepPoint(40, sp.grown(40), psi, sp.difference_in_means(sim.y, sim.d), sim.ate)
    torch.testing.assert_close(point.tau, tau)
    torch.testing.assert_close(point.se, se)
    assert math.isclose(point.se_ratio(), (se.mean() / tau.std()).item())
    conf = sp.NuisanceConfig(hidden=(4, 4), steps_outcome=3, steps_propensity=2)
    models = sp.fit_nuisances(sim, conf, seed=2)
    for cross in (True, False):  # one fit, evaluated both ways, is cross_fit's answer
        for a, b in zip(models.predict(cross), sp.cross_fit(sim, conf, seed=2, cross=cross),
                        strict=True):
            torch.testing.assert_close(a, b)
    # on its own fold the propensity model sees the labels it was fitted on: fold 0 of
    # replication 0 is predicted by model 0 without cross-fitting, by model 1 with it
    own, other = models.predict(False)[2], models.predict(True)[2]
    assert not torch.allclose(own, other)
    with pytest.raises(ValueError, match="shape"):
        sp.aipw_scores(sim.y, sim.d[:, :3], sim.mu0, sim.mu1, sim.e)
