"""The chapter "How important is weight symmetry in backpropagation?": feedback matrices and
layers (``feedback``), the stacked network with its hand-written backward pass (``network``),
the training grid of every variant (``training``)."""

from helpers.topics.weight_symmetry.feedback import (
    FEEDBACKS,
    BatchManhattan,
    FeedbackLinear,
    concordance_mask,
    feedback_matrix,
)
from helpers.topics.weight_symmetry.network import BatchedFeedbackMLP, Variant
from helpers.topics.weight_symmetry.training import (
    DEFAULT_LR,
    GridResult,
    train_feedback_grid,
)

__all__ = [
    "DEFAULT_LR",
    "BatchedFeedbackMLP",
    "concordance_mask",
    "BatchManhattan",
    "FEEDBACKS",
    "FeedbackLinear",
    "GridResult",
    "Variant",
    "feedback_matrix",
    "train_feedback_grid",
]
