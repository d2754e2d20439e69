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


def assert_same_mean(first: torch.Tensor, second: torch.Tensor, false_failure_rate: float = 1e-4) -> None:
    """Two-sample check that independent ``first: [R1, *P]`` and ``second: [R2, *P]`` have
    the same mean coordinate-wise: ``|mean_1 - mean_2| <= z * sqrt(SE_1^2 + SE_2^2) + atol``,
    ``z`` from :func:`z_bound` over the ``P`` coordinates."""
    difference = (first.mean(0) - second.mean(0)).abs()
    standard_error = (first.var(0) / first.shape[0] + second.var(0) / second.shape[0]).sqrt()
    atol = 1e3 * torch.finfo(first.dtype).eps * max(float(first.abs().max()), float(second.abs().max()), 1.0)
    tolerance = z_bound(difference.numel(), false_failure_rate) * standard_error + atol
    worst = int((difference - tolerance).argmax())
    assert bool((difference <= tolerance).all()), (
        f"means differ by {difference.flatten()[worst]:.3g} at coordinate {worst}, "
        f"tolerance {tolerance.flatten()[worst]:.3g} (SE {standard_error.flatten()[worst]:.3g})"
    )


def assert_same_variance(first: torch.Tensor, second: torch.Tensor, false_failure_rate: float = 1e-4) -> None:
    """Two-sample check that ``first`` and ``second`` have the same variance coordinate-wise:
    :func:`assert_same_mean` on the squared deviations from each sample's mean
    (asymptotically normal for finite fourth moments)."""
    assert_same_mean((first - first.mean(0)) ** 2, (second - second.mean(0)) ** 2, false_failure_rate)


def assert_variance_not_larger(first: torch.Tensor, second: torch.Tensor, false_failure_rate: float = 1e-4) -> float:
    """Check that the total variance (:func:`total_variance`) of ``first: [R1, *P]`` is not
    significantly larger than that of ``second: [R2, *P]``; returns their ratio.

    One-sided z-test on the per-run squared distances ``|x_r - mean|^2`` whose means are
    the total variances: it fails with probability at most ``false_failure_rate`` when
    the variance of ``first`` is no larger.
    """
    excess, standard_error = _spread_excess(first, second)
    z = NormalDist().inv_cdf(1 - false_failure_rate)
    assert excess <= z * standard_error, (
        f"total variance {total_variance(first):.4g} exceeds {total_variance(second):.4g} by {excess:.3g}, "
        f"more than {z:.2f} standard errors ({standard_error:.3g})"
    )
    return total_variance(first) / total_variance(second)


def assert_variance_smaller(first: torch.Tensor, second: torch.Tensor, false_pass_rate: float = 1e-4) -> float:
    """Check that the total variance of independent ``first: [R1, *P]`` is significantly smaller
    than that of ``second: [R2, *P]``; returns their ratio.

    The one-sided z-test of :func:`assert_variance_not_larger` the other way round: it
    passes with probability at most ``false_pass_rate`` when the variance of ``first`` is
    no smaller. Its false-failure rate depends on the true difference: ``Phi(z - delta)``
    for a difference of ``delta`` standard errors (the message reports the observed one).
    """
    excess, standard_error = _spread_excess(first, second)
    z = NormalDist().inv_cdf(1 - false_pass_rate)
    assert -excess > z * standard_error, (
        f"total variance {total_variance(first):.4g} is below {total_variance(second):.4g} by {-excess:.3g}, "
        f"not more than {z:.2f} standard errors ({standard_error:.3g})"
    )
    return total_variance(first) / total_variance(second)


def _spread_excess(first: torch.Tensor, second: torch.Tensor) -> tuple[float, float]:
    """Total variance of ``first`` minus that of ``second``, estimated as the difference of the
    mean per-run squared distances ``|x_r - mean|^2``, and its standard error."""
    first_spread = (first - first.mean(0)).flatten(1).pow(2).sum(1)
    second_spread = (second - second.mean(0)).flatten(1).pow(2).sum(1)
    standard_error = math.sqrt(
        float(first_spread.var()) / first_spread.numel() + float(second_spread.var()) / second_spread.numel()
    )
    return float(first_spread.mean() - second_spread.mean()), standard_error
