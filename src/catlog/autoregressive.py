"""Autoregressive categorical distributions ``p(x) = prod_d p(x_d | x_<d)`` for SCateR (paper section 3)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch.distributions import Distribution, constraints

from catlog._sampling import gumbel_noise
from catlog._validation import check_category_logits, check_count, check_device

Conditional = Callable[[torch.Tensor, int], torch.Tensor]
_Choose = Callable[[torch.Tensor, int], torch.Tensor]


class Autoregressive(Distribution):
    r"""A distribution over ``D`` categorical variables, each given the ones before it.

    $$
    p(x) = \prod_{d=1}^{D} p(x_d \mid x_{<d}).
    $$

    A ``torch.distributions.Distribution`` with ``batch_shape = B``, ``event_shape = [D]``
    and integer support ``{0..K-1}^D``; :meth:`sample` and :meth:`log_prob` take
    ``D`` calls of ``conditional`` each. ``conditional(x, d)`` returns the logits of
    ``X_d`` given the prefix ``x[..., :d]``:

    - ``x`` is a ``LongTensor[M, *B, D]`` (catlog always passes exactly one leading
      sample dimension ``M``); entries at positions ``>= d`` are placeholders holding
      arbitrary valid categories and **must be ignored**. Reading them does not raise
      (it cannot be detected in general) but makes every estimate wrong.
    - it returns ``Tensor[M, *B, K]`` (floating point, on ``device``) of unnormalised
      log-probabilities; ``-inf`` marks a category that is impossible given the
      prefix; at least one category must be possible; NaN and ``+inf`` are refused
      while ``validate_args`` is on.
    - its parameters (shared across positions or not) receive gradients from the
      estimators; whenever autograd records, ``x`` is a fresh tensor that catlog does
      not modify afterwards, so ``conditional`` may save it for backward.

    Args:
        conditional: the function above.
        num_variables: ``D >= 1``.
        num_categories: ``K >= 1``.
        batch_shape: ``B``: independent distributions batched together.
        device: where samples are created (default CPU); ``conditional`` must accept it.
        dtype: floating dtype that ``f``'s values and one-hot inputs take (default:
            torch's default dtype).
        validate_args: check the values ``conditional`` returns and those handed to
            :meth:`log_prob` (host synchronisations); ``None`` follows
            ``torch.distributions.Distribution``'s class-wide default.

    Raises:
        ValueError: for a ``conditional`` that is not callable, counts below 1, a bad
            ``batch_shape`` or device, or a dtype that is not floating point; when
            sampling, for logits of the wrong shape, dtype or device from ``conditional``.

    Examples:
        >>> import torch, catlog
        >>> table = torch.zeros(3, 3, requires_grad=True)    # logits of x_d given x_{d-1}
        >>> def conditional(x, d):                           # x: [M, D] -> logits [M, K]
        ...     return table[x[:, d - 1]] if d > 0 else table[0].expand(x.shape[0], 3)
        >>> dist = catlog.Autoregressive(conditional, num_variables=4, num_categories=3)
        >>> dist.sample((5,)).shape
        torch.Size([5, 4])
        >>> catlog.SCateR(1)(lambda x: (x == 2).sum(-1).float(), dist).backward()   # table.grad
    """

    arg_constraints: dict[str, constraints.Constraint] = {}

    def __init__(
        self,
        conditional: Conditional,
        num_variables: int,
        num_categories: int,
        batch_shape: Sequence[int] = (),
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        validate_args: bool | None = None,
    ) -> None:
        if not callable(conditional):
            raise ValueError(
                "conditional: expected a callable (x: LongTensor[M, *B, D], d: int) -> Tensor[M, *B, K], "
                f"got {type(conditional).__name__}"
            )
        self.conditional = conditional
        self.num_variables = check_count("num_variables", num_variables, 1)
        self.num_categories = check_count("num_categories", num_categories, 1)
        if isinstance(batch_shape, torch.Tensor) or not isinstance(batch_shape, Sequence):
            raise ValueError(f"batch_shape: expected a sequence of integers >= 0, got {batch_shape!r}")
        sizes = torch.Size(check_count("batch_shape", size, 0) for size in batch_shape)
        check_device("device", torch.device("cpu" if device is None else device))
        # with its index ("cuda" -> "cuda:0"), so that it compares equal to the device of tensors made there
        try:
            self.device = torch.empty(0, device=device).device
        except (AssertionError, RuntimeError) as error:  # torch asserts when built without CUDA
            raise ValueError(f"device: expected a device this torch can use, got {str(device)!r}: {error}") from None
        self.dtype = torch.get_default_dtype() if dtype is None else dtype
        if not self.dtype.is_floating_point:
            raise ValueError(f"dtype: expected a floating-point dtype, got {self.dtype}")
        if validate_args is not None and not isinstance(validate_args, bool):
            raise ValueError(f"validate_args: expected True, False or None, got {validate_args!r}")
        super().__init__(sizes, torch.Size([self.num_variables]), validate_args=validate_args)

    def __repr__(self) -> str:
        return (
            f"Autoregressive(num_variables={self.num_variables}, num_categories={self.num_categories}, "
            f"batch_shape={tuple(self.batch_shape)}, device={str(self.device)!r}, dtype={self.dtype})"
        )

    @property
    def support(self) -> constraints.Constraint:
        """``{0..K-1}^D``: ``D`` integers in ``[0, K - 1]``."""
        categories = constraints.integer_interval(0, self.num_categories - 1)  # type: ignore[no-untyped-call]
        return constraints.independent(categories, 1)  # type: ignore[no-untyped-call]

    def sample(
        self, sample_shape: Sequence[int] = torch.Size(), generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Ancestral samples ``x_d ~ p(. | x_<d)``, ``d = 0..D-1`` (``D`` calls of ``conditional``).

        Returns:
            ``LongTensor[*S, *B, D]``; no autograd graph is built.
        """
        shape = torch.Size(check_count("sample_shape", size, 0) for size in sample_shape)
        with torch.no_grad():
            x, _ = self._draw(self._gumbel(shape.numel(), generator))
        return x.reshape(*shape, *x.shape[1:])

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """``log p(x) = sum_d log softmax(conditional(x, d))[x_d]`` (``D`` calls of ``conditional``).

        Args:
            value: ``x: LongTensor[*S, *B, D]``.

        Returns:
            ``[*S, *B]``, differentiable in the conditional's parameters; ``-inf`` where
            some ``x_d`` is impossible given its prefix (``conditional`` is then still
            called on the later prefixes of ``x`` and must return a possible category).
        """
        tail = (*self.batch_shape, self.num_variables)
        if (
            not isinstance(value, torch.Tensor)
            or value.dtype != torch.long
            or tuple(value.shape[value.ndim - len(tail) :]) != tail
        ):
            got = (
                f"{value.dtype} of shape {tuple(value.shape)}"
                if isinstance(value, torch.Tensor)
                else type(value).__name__
            )
            raise ValueError(f"value: expected a LongTensor of shape [*S, *B, D] = [*S, *{list(tail)}], got {got}")
        if self._validate_args and bool(((value < 0) | (value >= self.num_categories)).any()):
            raise ValueError(f"value: expected categories in [0, {self.num_categories}), got values outside")
        flat = value.reshape(-1, *tail)
        logits = self._rollout_logits(flat.clone(), lambda logits, d: flat[:, ..., d])
        return _sequence_log_prob(logits, flat).reshape(value.shape[:-1])

    def _gumbel(self, num_rows: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Standard Gumbel noise ``[M, *B, D, K]`` that :meth:`_draw` turns into ``M`` samples."""
        like = torch.empty((), dtype=self.dtype, device=self.device)
        return gumbel_noise((num_rows, *self.batch_shape, self.num_variables, self.num_categories), like, generator)

    def _draw(self, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Ancestral samples driven by Gumbel noise: ``x_d = argmax_k log p(k | x_<d) + noise_dk``.

        Args:
            noise: ``[M, *B, D, K]``, e.g. from :meth:`_gumbel`.

        Returns:
            ``x: LongTensor[M, *B, D]`` and ``logits: [M, *B, D, K]`` of ``X_d`` given
            ``x_<d`` (built with autograd if enabled). ``D`` calls of ``conditional``.
        """
        x = torch.zeros(noise.shape[:-1], dtype=torch.long, device=self.device)
        return x, self._rollout_logits(x, _follow_noise(noise))

    def _rollout(self, x: torch.Tensor, choose: _Choose, active: Sequence[int]) -> None:
        """Fill ``x`` position by position, in place: ``x[:a_d, ..., d] = choose(conditional(x[:a_d], d), d)``.

        One call of ``conditional`` per position ``d`` with ``a_d > 0``.

        Args:
            x: ``LongTensor[M, *B, D]``; rows past ``a_d`` keep their ``x[..., d]``.
            choose: maps the checked logits ``[a_d, *B, K]`` and ``d`` to ``LongTensor[a_d, *B]``
                of possible categories.
            active: ``a_d``, how many leading rows to fill at each position; rows sorted
                by the position at which they start to be filled make each ``a_d`` a prefix.
        """
        for d, count in enumerate(active):
            if count:
                self._fill(x[:count], choose, d)

    def _rollout_logits(self, x: torch.Tensor, choose: _Choose) -> torch.Tensor:
        """:meth:`_rollout` of every row; returns the logits ``[M, *B, D, K]`` of each position
        (with autograd if it is enabled)."""
        return torch.stack([self._fill(x, choose, d) for d in range(self.num_variables)], -2)

    def _fill(self, x: torch.Tensor, choose: _Choose, d: int) -> torch.Tensor:
        """Set ``x[..., d] = choose(conditional(x, d), d)`` in place; returns the logits ``[M, *B, K]``."""
        logits = self._logits_at(x.clone() if torch.is_grad_enabled() else x, d)
        x[..., d] = choose(logits, d)
        return logits

    def _logits_at(self, x: torch.Tensor, d: int) -> torch.Tensor:
        """``conditional(x, d)``, checked: the logits ``[M, *B, K]`` of ``X_d`` given ``x[..., :d]``."""
        out = self.conditional(x, d)
        expected = (x.shape[0], *self.batch_shape, self.num_categories)
        if not isinstance(out, torch.Tensor):
            raise ValueError(f"conditional: expected a Tensor of shape {expected} at d={d}, got {type(out).__name__}")
        if tuple(out.shape) != expected or not out.is_floating_point():
            raise ValueError(
                f"conditional: expected floating logits of shape {expected} = [M, *B, K] at d={d}, "
                f"got {out.dtype} of shape {tuple(out.shape)}"
            )
        if out.device.type != self.device.type:
            raise ValueError(f"conditional: expected logits on {self.device} at d={d}, got {out.device}")
        if self._validate_args:
            check_category_logits(out.detach(), "conditional", f"of [M, *B] at d={d}")
        return out


def _follow_noise(noise: torch.Tensor, rows: torch.Tensor | None = None) -> _Choose:
    """The Gumbel-max choice ``argmax_k log_softmax(logits)_k + noise[r, ..., d, k]``.

    Args:
        noise: ``[R, *B, D, K]`` Gumbel noise.
        rows: ``LongTensor[M]``, the noise row of each sample row (default: the identity).
    """

    def choose(logits: torch.Tensor, d: int) -> torch.Tensor:
        count = logits.shape[0]
        row_noise = noise[:count, ..., d, :] if rows is None else noise[rows[:count], ..., d, :]
        return (logits.detach().log_softmax(-1) + row_noise).argmax(-1)

    return choose


def _sequence_log_prob(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``sum_d log softmax(logits[..., d, :])[x_d]``: ``logits [*S, *B, D, K]``, ``x [*S, *B, D]`` -> ``[*S, *B]``."""
    return logits.log_softmax(-1).gather(-1, x.unsqueeze(-1)).squeeze(-1).sum(-1)
