"""The problems of the experiments: each turns an estimator into repeated gradient estimates.

Every module builds the same :class:`Problem` (``D``, ``K``, whether relaxed estimators
apply, the exact gradient where it is known, and ``gradients(estimator, repeats,
generator) -> [R, P]``); the statistics of those rows are :mod:`catlog.measure`'s.

- :mod:`~catlog.experiments.problems.figure1`: figure 1's ``f`` on ``D x K`` logits;
- :mod:`~catlog.experiments.problems.binary`: figure 2's ``f`` and the squared Hamming distance (``K = 2``);
- :mod:`~catlog.experiments.problems.autoregressive`: a causal network (SCateR);
- :mod:`~catlog.experiments.problems.dvae`: the discrete VAE's encoder;
- :mod:`~catlog.experiments.problems.addition`: MNIST addition;
- :mod:`~catlog.experiments.problems.structured`: a GRU policy planning on FrozenLake or writing
  arithmetic expressions (SCateR), untrained or trained.

A new problem is a module with a function that returns a :class:`Problem` (see
docs/extending.md).
"""

from catlog.experiments.problems.problem import Problem, logits_problem, variance_per_entry

__all__ = ["Problem", "logits_problem", "variance_per_entry"]
