"""helpers: the package behind the executable deep-learning theory book.

Three layers, one folder each:

* ``helpers.core``: settings (``BOOK_MODE``, ``BOOK_SEED``, ``BOOK_DEVICE``), seeding, claim
  checks and their ledger, the start of a chapter, the figure style, progress bars and input
  validation. Imports nothing else of the package.
* ``helpers.engine``: what several chapters train or measure with: models, data sets, training
  loops, Hessians and Jacobians, the batched engine, rendered heads. Imports core only.
* ``helpers.topics``: one module per chapter, named after the chapter's file
  (``helpers.topics.resnet_rnn`` for ``book/depth/resnet_rnn.md``). Imports core and engine,
  never another topic.

``import helpers`` gives the core and engine names below; a chapter imports its topic as a
module, ``from helpers.topics import resnet_rnn``, and calls ``resnet_rnn.rnn_unroll(...)``.
The commands ``python -m helpers.claims``, ``helpers.seeds``, ``helpers.bench`` and
``helpers.build_cache`` sit beside the layers and may use all three.
"""

import os

# Tiny models on small shared CPUs run many times slower with OpenMP threads spin-waiting;
# this only takes effect when set before torch is first imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from helpers.core.chapter import start_chapter
from helpers.core.config import BookConfig, get_config
from helpers.core.ledger import KINDS, ClaimRecord, check_claim, load_ledger
from helpers.core.plotting import (
    PALETTE,
    label,
    reference_line,
    spectrum_plot,
    subplots,
    use_book_style,
)
from helpers.core.progress import progress
from helpers.core.seeding import (
    configure_threads,
    make_generator,
    map_in_threads,
    one_cpu_thread,
    seed_everything,
)
from helpers.engine.batched import BatchedMLP, batched_accuracy, train_batched, train_one
from helpers.engine.data import Split, bundled, digits
from helpers.engine.heads import Heads, random_heads, render_heads, view_vectors
from helpers.engine.hessian import count_near_zero, flat_parameters, loss_hessian, output_jacobian
from helpers.engine.models import MLP, DeepLinear
from helpers.engine.training import fit_lbfgs, fit_to_zero_loss, log_steps, train_gd

__all__ = [
    # core
    "KINDS", "PALETTE", "BookConfig", "ClaimRecord", "check_claim", "configure_threads",
    "get_config", "label", "load_ledger", "make_generator", "map_in_threads", "one_cpu_thread",
    "progress", "reference_line",
    "seed_everything", "spectrum_plot", "start_chapter", "subplots", "use_book_style",
    # engine
    "MLP", "BatchedMLP", "DeepLinear", "Heads", "Split", "batched_accuracy", "bundled",
    "count_near_zero", "digits", "fit_lbfgs", "fit_to_zero_loss", "flat_parameters",
    "log_steps", "loss_hessian", "output_jacobian", "random_heads", "render_heads",
    "train_batched", "train_gd", "train_one", "view_vectors",
]
