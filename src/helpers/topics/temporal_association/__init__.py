"""The chapter "Temporal association in clutter": synthetic videos
(``videos``), the trace rule (``trace_rule``)."""

from helpers.topics.temporal_association.trace_rule import (
    TEMPLATES,
    TraceResult,
    foldiak_trace,
    foldiak_trace_batched,
    invariance_index,
    label_accuracy,
    match_purity,
    template_codes,
    trace_experiment,
    trace_runs,
    trace_sweep,
    winners,
)
from helpers.topics.temporal_association.videos import (
    CLUTTER_KINDS,
    Videos,
    backgrounds,
    box_crops,
    cluttered,
    frame_table,
    make_videos,
    object_templates,
)

__all__ = [
    "CLUTTER_KINDS",
    "TEMPLATES",
    "TraceResult",
    "Videos",
    "backgrounds",
    "box_crops",
    "cluttered",
    "foldiak_trace",
    "foldiak_trace_batched",
    "frame_table",
    "invariance_index",
    "label_accuracy",
    "make_videos",
    "match_purity",
    "object_templates",
    "template_codes",
    "trace_experiment",
    "trace_runs",
    "trace_sweep",
    "winners",
]
