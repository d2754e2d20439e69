"""Statistical helpers for the tests: standard errors and Bonferroni-corrected z bounds."""

from __future__ import annotations

import math
from statistics import NormalDist

import torch


def z_bound(num_tests: int, false_failure_rate: float = 1e-4) -> float:
    """Two-sided normal quantile so that ``num_tests`` independent checks together fail
    with probability at most ``false_failure_rate`` when the null hypothesis holds."""
    return NormalDist().inv_cdf(1 - false_failure_rate / (2 * num_tests))


def assert_unbiased(samples: torch.Tensor, exact: torch.Tensor, false_failure_rate: float = 1e-4) -> None:
    """Check that the mean of ``samples: [R, *P]`` matches ``exact: [*P]`` coordinate-wise.

    Tolerance: ``z * SE + atol`` with ``SE = std / sqrt(R)`` and ``z`` from :func:`z_bound`
    over the ``P`` coordinates; ``atol`` covers float round-off where the estimator is
    exact (``SE = 0``).
    """
    runs = samples.shape[0]
    mean = samples.mean(0)
    standard_error = samples.std(0) / math.sqrt(runs)
    scale = exact.abs().max().clamp_min(1.0)
    atol = 1e3 * torch.finfo(samples.dtype).eps * scale
    tolerance = z_bound(exact.numel(), false_failure_rate) * standard_error + atol
    error = (mean - exact).abs()
    worst = int((error - tolerance).argmax())
    assert bool((error <= tolerance).all()), (
        f"mean of {runs} estimates differs from the exact value by {error.flatten()[worst]:.3g} "
        f"at coordinate {worst}, tolerance {tolerance.flatten()[worst]:.3g} "
        f"(SE {standard_error.flatten()[worst]:.3g})"
    )


def total_variance(samples: torch.Tensor) -> float:
    """Trace of the covariance of ``samples: [R, *P]`` over the coordinates ``P``."""
    return float(samples.flatten(1).var(0).sum())
