"""DisARM: antithetic pairs for binary variables (Dong, Mnih and Tucker, NeurIPS 2020)."""

from __future__ import annotations

import torch

from catlog._objective import Objective
from catlog._sampling import uniform
from catlog._validation import Checked, check_samples
from catlog.estimator import Cost, Estimator


class DisARM(Estimator):
    r"""DisARM: antithetic pairs for binary variables (``K = 2``; Dong, Mnih and Tucker, NeurIPS 2020).

    With $\alpha_d$ the difference of variable ``d``'s two logits, each pair draws
    $u \sim \mathrm{Uniform}(0, 1)^D$ and evaluates ``f`` on the antithetic samples
    $b = 1[u < \sigma(\alpha)]$ and $\tilde b = 1[1 - u < \sigma(\alpha)]$ (each
    marginally a sample of ``p``). Averaged over the ``P`` pairs, the estimate of
    $\partial \mathbb{E}[f] / \partial \alpha_d$ is

    $$
    g_d = \tfrac{1}{2} \big(f(b) - f(\tilde b)\big)\, (b_d - \tilde b_d)\, \sigma(|\alpha_d|),
    $$

    unbiased (the multivariate form of the paper). The logits receive $g_d$ at
    category 1 and $-g_d$ at category 0. The value returned is the mean of ``f`` over
    the $2P$ samples, and parameters that ``f`` uses get the pathwise term. A variable
    with one possible value (a ``-inf`` logit) gets zero gradient.

    Shapes:
        - dist: logits ``[*B, D, 2]`` or a factorised categorical distribution with ``K = 2``.
        - f: ``LongTensor[2P, *B, D] -> Tensor[2P, *B]`` (one-hot with ``one_hot``).
        - returns: ``Tensor[*B]``.

    Cost:
        $2P$ samples and $2P$ evaluations of ``f`` per batch element.

    Args:
        num_pairs: ``P >= 1`` antithetic pairs.
        one_hot: hand ``f`` float one-hot samples instead of category indices.
        generator: the default generator of the samples (a call may override it).
        validate_args: check values (see :class:`~catlog.estimator.Estimator`); ``None`` follows the class default.
        chunk_size: evaluate ``f`` on at most this many sample rows per call (each holding
            the whole batch ``*B``), to bound peak memory; ``None``: all in one call. The
            result does not depend on it.

    Raises:
        ValueError: for ``num_pairs < 1``, logits with ``K != 2`` or an ``Autoregressive``,
            and for bad input in the call.

    Examples:
        >>> import torch, catlog
        >>> logits = torch.zeros(5, 2, requires_grad=True)   # D = 5 binary variables
        >>> catlog.DisARM(2)(lambda x: x.sum(-1).float() ** 2, logits).backward()
        >>> catlog.DisARM(2).cost(5, 2)
        Cost(samples=4, evaluations=4)
    """

    num_pairs = Checked(check_samples(1))

    def __init__(
        self,
        num_pairs: int,
        *,
        one_hot: bool = False,
        generator: torch.Generator | None = None,
        validate_args: bool | None = None,
        chunk_size: int | None = None,
    ) -> None:
        super().__init__(one_hot=one_hot, generator=generator, validate_args=validate_args, chunk_size=chunk_size)
        self.num_pairs = num_pairs

    def compute_cost(self, num_variables: int, num_categories: int) -> Cost:
        """``2 P`` samples and ``2 P`` evaluations; ``K = 2`` only."""
        _check_binary("num_categories", num_categories)
        return Cost(samples=2 * self.num_pairs, evaluations=2 * self.num_pairs)

    def estimate(self, objective: Objective, logits: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        _check_binary("dist", logits.shape[-1], f" (shape {tuple(logits.shape)})")
        probs = logits.detach().softmax(-1)
        # u >= tiny: a variable with p_1 = 1 (p_0 = 0) then has b = b~ = 1 exactly
        draws = uniform((self.num_pairs, *logits.shape[:-1]), logits, generator).clamp_min_(
            torch.finfo(logits.dtype).tiny
        )
        # 1 - u < p_1 written as u > p_0, exact when p_0 = 0
        pairs = torch.stack([draws < probs[..., 1], draws > probs[..., 0]])  # [2, P, *B, D]: b, b~
        values = objective(pairs.flatten(0, 1).long()).reshape(pairs.shape[:-1])
        with torch.no_grad():
            difference = (values[0] - values[1]).unsqueeze(-1)  # [P, *B, 1]
            flips = pairs[0].to(logits.dtype) - pairs[1].to(logits.dtype)  # b_d - b~_d
            coefficient = (difference * flips).mean(0) * probs.amax(-1) / 2  # g_d, [*B, D]
        alpha = logits[..., 1] - logits[..., 0]
        # infinite where a variable has one possible value, or where the difference of two finite logits overflows
        alpha = alpha.masked_fill(alpha.detach().isinf(), 0.0)
        score = (coefficient * alpha).sum(-1)
        return values.mean((0, 1)) + (score - score.detach())


def _check_binary(name: str, num_categories: int, shape: str = "") -> None:
    """Refuse ``K != 2``: DisARM is defined for binary variables only."""
    if num_categories != 2:
        raise ValueError(
            f"{name}: DisARM expects binary variables, shape [*B, D, 2], got K = {num_categories} "
            f"categories{shape}; use IndeCateR or RLOO for K != 2"
        )
