"""The chapter "Deep vs shallow networks on compositional functions": target functions and
experiments (``experiments``), tree and shallow networks (``models``)."""

from helpers.topics.compositional.experiments import (
    CONSTITUENTS,
    Budget,
    budget_for,
    check_constituent,
    compositional_target,
    deep_vs_shallow,
    deep_vs_shallow_grid,
    deep_vs_shallow_study,
    error_vs_parameters,
    lr_schedule,
    pairing_permutation,
    power_law_fit,
    relative_mse,
    train_deep_and_shallow,
)
from helpers.topics.compositional.models import (
    ShallowNet,
    TreeNet,
    draw_tree,
    matched_width,
    shallow_parameter_count,
    tree_levels,
    tree_parameter_count,
)

__all__ = [
    "Budget",
    "CONSTITUENTS",
    "ShallowNet",
    "TreeNet",
    "budget_for",
    "check_constituent",
    "compositional_target",
    "deep_vs_shallow",
    "deep_vs_shallow_grid",
    "deep_vs_shallow_study",
    "draw_tree",
    "error_vs_parameters",
    "lr_schedule",
    "matched_width",
    "pairing_permutation",
    "power_law_fit",
    "relative_mse",
    "shallow_parameter_count",
    "train_deep_and_shallow",
    "tree_levels",
    "tree_parameter_count",
]
