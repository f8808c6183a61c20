"""The chapter "Implicit bias of gradient descent": least squares
(``least_squares``), stacked deep linear networks (``deep_linear``), max-margin classifiers
(``max_margin``), gradient descent near a degenerate minimum (``near_minimum``)."""

from helpers.topics.implicit_bias.deep_linear import deep_linear_gd
from helpers.topics.implicit_bias.least_squares import (
    balanced_sharpness,
    early_stopping_ridge_gap,
    gd_closed_form,
    gd_least_squares,
    hessian_sharpness,
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
from helpers.topics.implicit_bias.near_minimum import (
    gd_to_minimum,
    loss_and_grad,
    order_of_deviation,
    tanh_jacobian,
    tanh_net,
)

__all__ = [
    "angle_degrees",
    "balanced_sharpness",
    "deep_linear_gd",
    "early_stopping_ridge_gap",
    "gd_closed_form",
    "gd_least_squares",
    "gd_to_minimum",
    "hard_margin_svm",
    "hessian_sharpness",
    "logistic_gd",
    "loss_and_grad",
    "min_norm_solution",
    "null_space_projector",
    "order_of_deviation",
    "ridge_solution",
    "separable_data",
    "stability_limit",
    "tanh_jacobian",
    "tanh_net",
]
