"""helpers: the package behind the executable deep-learning theory book.

Every chapter imports it. It reads the book's settings (``BOOK_MODE``, ``BOOK_SEED``,
``BOOK_DEVICE``) in one place (``helpers.config``), seeds everything, checks claims into the
ledger (``helpers.ledger``), styles figures (``helpers.plotting``), and holds the
reusable experiments, one module per topic.
"""

import os

# Tiny models on small shared CPUs run many times slower with OpenMP threads spin-waiting;
# this only takes effect when set before torch is first imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .batched import BatchedMLP, batched_accuracy, train_batched, train_one
from .chapter import start_chapter
from .config import BookConfig, get_config
from .data import Split, bundled, digits
from .hessian import count_near_zero, flat_parameters, loss_hessian, output_jacobian
from .ledger import ClaimRecord, check_claim, load_ledger
from .least_squares import (
    early_stopping_ridge_gap,
    gd_closed_form,
    gd_least_squares,
    min_norm_solution,
    null_space_projector,
    ridge_solution,
    stability_limit,
)
from .max_margin import (
    angle_degrees,
    hard_margin_svm,
    logistic_gd,
    separable_data,
)
from .models import MLP, DeepLinear
from .plotting import label, reference_line, spectrum_plot, subplots, use_book_style
from .progress import progress
from .seeding import configure_threads, make_generator, one_cpu_thread, seed_everything
from .training import fit_lbfgs, fit_to_zero_loss, log_steps, train_gd

# Chapters add their exports below, one import line per module.
from .feedback import FEEDBACKS, BatchManhattan, FeedbackLinear, feedback_matrix  # noqa: F401
from .feedback_training import GridResult, Variant, train_feedback_grid  # noqa: F401
from .heads import Heads, random_heads, render_heads, view_vectors  # noqa: F401
from .hebbian import centre_views, mirror_symmetry_index, oja, principal_components, sanger, unit_responses  # noqa: E501, F401
from .encoder_decoder import EncoderDecoder1d, HaarCReLU, count_patterns, frame_expansion_error, haar_filters, jacobian_ranks, jacobians, line_breakpoints  # noqa: E501, F401
from .wide_features import WideCNN, distinct_digits, numerical_rank, random_labels, readout_fit, train_full_gd, width_sweep  # noqa: E501, F401
from .normalization import OnlineResult, StreamState, lp_stats, normalize, streaming_normalize, train_online  # noqa: E501, F401
from .recurrent_resnet import ResidualStack, classifier_accuracy, rnn_unroll, train_classifier  # noqa: E501, F401
from .mean_field import beta_q, chi, correlated_inputs, correlation_map, correlation_trajectory, delta_map, edge_of_chaos, gaussian_moment, mean_field_init_, random_network_gram, relu_correlation_map, variance_fixed_point, variance_map  # noqa: E501, F401
from .signal_propagation import ARCHITECTURES, Propagation, effective_rank, growth_fits, linear_fit, propagate  # noqa: E501, F401
from .compositional import CONSTITUENTS, Budget, budget_for, check_constituent, compositional_target, deep_vs_shallow, deep_vs_shallow_grid, error_vs_parameters, lr_schedule, pairing_permutation, relative_mse, train_deep_and_shallow  # noqa: E501, F401
from .compositional_models import ShallowNet, TreeNet, draw_tree, matched_width, shallow_parameter_count, tree_parameter_count, tree_levels  # noqa: E501, F401
from .linear_regions import boundary_distance, count_regions, count_regions_on_grid, first_layer_expected_count, he_networks, max_regions_on_line, segment_breakpoints  # noqa: E501, F401
from .capacity import arrangement_regions, capacity_formula, cover_count, lp_separable, threshold_functions  # noqa: E501, F401
from .monotone import best_monotone_accuracy, init_mlps, monotonicity_violations, ordered_pairs, train_classifiers  # noqa: E501, F401
from .compression import Compressed, compress, descriptors, huffman_bits, huffman_lengths, kmeans_quantize, magnitude_mask, retrieval_map, tradeoff, uniform_quantize  # noqa: E501, F401
from .isoperimetry import ErrorSet, cdf_gap, error_sets, isoperimetric_cdf, isoperimetric_distance, line_search_distance, linear_error_distance, noise_error_rate  # noqa: E501, F401
from .zico import BatchedCNN, SearchResult, SmallCNN, n_parameters, search_space, train_cnns, zico_batched, zico_from_gradients, zico_score  # noqa: E501, F401
from .information_flow import MIEstimate, NoisyTanhNet, binned_entropy, clustered_centres, mixture_mi  # noqa: E501, F401
from .semiparametric import NuisanceConfig, Simulation, aipw, coverage, cross_fit, difference_in_means, simulate  # noqa: E501, F401
from .conditioning import forward as conditioning_forward, kronecker_hessian, layer_line_losses, log10_condition, random_weights, third_difference  # noqa: E501, F401
from .polynomial_relu import PolyReLU, eval_polynomial, filter_normalised_direction, fit_relu_polynomial, jacobian_rank, loss_slice, net_accuracy, normalised_net, train_full_batch  # noqa: E501, F401
from .sublevel_paths import ConstructedPath, OneHidden, constructed_path, half_mse, hidden_features, lstsq_readout, mirrored_endpoint, network_loss, straight_line_losses  # noqa: E501, F401
from .teacher_student import StudentRun, Teacher, batch_norm_train, best_correlations, bn_projected_gradient, eps_leak, make_teacher, relu_nodes, train_students  # noqa: E501, F401
from .videos import CLUTTER_KINDS, Videos, backgrounds, cluttered, frame_table, make_videos, object_templates  # noqa: E501, F401
from .trace_rule import TraceResult, foldiak_trace, foldiak_trace_batched, invariance_index, label_accuracy, match_purity, template_codes, trace_experiment, trace_runs, trace_sweep, winners  # noqa: E501, F401
from .neural_collapse import batched_hidden_features, class_means, conv_toeplitz, entropy_rank, etf_deviation, nc1, simplex_etf_gram, weight_decay_unrolled  # noqa: E501, F401
from .greedy import accuracy as greedy_accuracy, aux_head, conv_block, freeze, linear_probe, mlp_block, stage_features, train_end_to_end, train_greedy, two_spirals  # noqa: E501, F401
from .spectra import PowerLawFit, count_spikes, esd, fit_power_law, mp_cdf, mp_density, mp_edges, mp_ks, pareto_matrix  # noqa: E501, F401
from .sgd_noise import equal_trace_noises, expected_loss_increase, first_order_increase, flat_loss, noise_alignment, noisy_chains, per_sample_grads, power_law_hessian, simulate_quadratic  # noqa: E501, F401

# Everything public defined in the package, for ``from helpers import *`` and the API page.
__all__ = sorted(
    name for name, obj in globals().items()
    if not name.startswith("_") and getattr(obj, "__module__", "").startswith("helpers.")
)
