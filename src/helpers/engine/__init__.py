"""What several chapters build on: models, data sets, training loops, Hessians and Jacobians,
the batched engine (K small networks trained in one vectorised run) and rendered heads.
Imports ``helpers.core`` only, never a topic."""
