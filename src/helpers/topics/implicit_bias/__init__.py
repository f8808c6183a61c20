"""The chapter "Implicit bias of gradient descent": least squares
(``least_squares``), max-margin classifiers (``max_margin``)."""

from helpers.topics.implicit_bias.least_squares import (
    early_stopping_ridge_gap,
    gd_closed_form,
    gd_least_squares,
    min_norm_solution,
    null_space_projector,
    ridge_solution,
    stability_limit,
)
from helpers.topics.implicit_bias.max_margin import (
    angle_degrees,
    hard_margin_svm,
    logistic_gd,
    separable_data,
)

__all__ = [
    "angle_degrees",
    "early_stopping_ridge_gap",
    "gd_closed_form",
    "gd_least_squares",
    "hard_margin_svm",
    "logistic_gd",
    "min_norm_solution",
    "null_space_projector",
    "ridge_solution",
    "separable_data",
    "stability_limit",
]
