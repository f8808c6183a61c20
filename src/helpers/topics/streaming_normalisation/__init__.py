"""The chapter "Streaming normalisation": normalisation and online training
(``normalization``), running statistics (``state``), the hand-written backward pass
(``backprop``)."""

from helpers.topics.streaming_normalisation.normalization import (
    OnlineResult,
    StreamState,
    lp_stats,
    normalize,
    streaming_normalize,
    train_online,
)

__all__ = [
    "OnlineResult",
    "StreamState",
    "lp_stats",
    "normalize",
    "streaming_normalize",
    "train_online",
]
