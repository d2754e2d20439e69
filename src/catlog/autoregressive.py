"""Autoregressive categorical distributions ``p(x) = prod_d p(x_d | x_<d)`` for SCateR (paper section 3)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from catlog._sampling import gumbel_noise
from catlog._validation import check_category_logits, check_count

Conditional = Callable[[torch.Tensor, int], torch.Tensor]
Choose = Callable[[torch.Tensor, int], torch.Tensor]


class Autoregressive:
    """A distribution over ``D`` categorical variables, ``p(x) = prod_d p(x_d | x_<d)``.

    ``conditional(x, d)`` returns the logits of ``X_d`` given the prefix ``x[..., :d]``:

    - ``x`` is a ``LongTensor[M, *B, D]`` (catlog always passes exactly one leading
      sample dimension ``M``); entries at positions ``>= d`` are placeholders holding
      arbitrary valid categories and **must be ignored**. Reading them does not raise
      (it cannot be detected in general) but makes every estimate wrong.
    - it returns ``Tensor[M, *B, K]`` (floating point) of unnormalised
      log-probabilities; ``-inf`` marks a category that is impossible given the
      prefix; at least one category must be possible; NaN and ``+inf`` are refused.
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
    """

    def __init__(
        self,
        conditional: Conditional,
        num_variables: int,
        num_categories: int,
        batch_shape: Sequence[int] = (),
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
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
        self.batch_shape = torch.Size(check_count("batch_shape", size, 0) for size in batch_shape)
        self.device = torch.device("cpu" if device is None else device)
        self.dtype = torch.get_default_dtype() if dtype is None else dtype
        if not self.dtype.is_floating_point:
            raise ValueError(f"dtype: expected a floating-point dtype, got {self.dtype}")

    def __repr__(self) -> str:
        return (
            f"Autoregressive(num_variables={self.num_variables}, num_categories={self.num_categories}, "
            f"batch_shape={tuple(self.batch_shape)})"
        )

    def sample(self, sample_shape: Sequence[int] = (), generator: torch.Generator | None = None) -> torch.Tensor:
        """Ancestral samples ``x_d ~ p(. | x_<d)``, ``d = 0..D-1`` (``D`` calls of ``conditional``).

        Returns:
            ``LongTensor[*S, *B, D]``; no autograd graph is built.
        """
        sample_shape = torch.Size(sample_shape)
        with torch.no_grad():
            x, _ = self.draw(self.gumbel(sample_shape.numel(), generator), record=False)
        return x.reshape(*sample_shape, *x.shape[1:])

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """``log p(x) = sum_d log softmax(conditional(x, d))[x_d]`` (``D`` calls of ``conditional``).

        Args:
            x: ``LongTensor[*S, *B, D]``.

        Returns:
            ``[*S, *B]``, differentiable in the conditional's parameters; ``-inf`` where
            some ``x_d`` is impossible given its prefix (``conditional`` is then still
            called on the later prefixes of ``x`` and must return a possible category).
        """
        tail = (*self.batch_shape, self.num_variables)
        if not isinstance(x, torch.Tensor) or x.dtype != torch.long or tuple(x.shape[x.ndim - len(tail) :]) != tail:
            got = f"{x.dtype} of shape {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"x: expected a LongTensor of shape [*S, *B, D] = [*S, *{list(tail)}], got {got}")
        if bool(((x < 0) | (x >= self.num_categories)).any()):
            raise ValueError(f"x: expected categories in [0, {self.num_categories}), got values outside")
        flat = x.reshape(-1, *tail)
        logits = self.rollout(flat.clone(), lambda logits, d: flat[:, ..., d], record=True)
        return sequence_log_prob(logits, flat).reshape(x.shape[:-1])

    def gumbel(self, num_rows: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Standard Gumbel noise ``[M, *B, D, K]`` that :meth:`draw` turns into ``M`` samples."""
        like = torch.empty((), dtype=self.dtype, device=self.device)
        return gumbel_noise((num_rows, *self.batch_shape, self.num_variables, self.num_categories), like, generator)

    def draw(self, noise: torch.Tensor, record: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Ancestral samples driven by Gumbel noise: ``x_d = argmax_k log p(k | x_<d) + noise_dk``.

        Args:
            noise: ``[M, *B, D, K]``, e.g. from :meth:`gumbel`.
            record: also return the conditional logits (built with autograd if enabled).

        Returns:
            ``x: LongTensor[M, *B, D]`` and ``logits: [M, *B, D, K]`` of ``X_d`` given
            ``x_<d`` (``None`` unless ``record``). ``D`` calls of ``conditional``.
        """
        x = self.placeholder(noise.shape[0])
        return x, self.rollout(x, follow_noise(noise), record=record)

    def placeholder(self, num_rows: int) -> torch.Tensor:
        """All-zero samples ``LongTensor[M, *B, D]`` to be filled by :meth:`rollout`."""
        return torch.zeros((num_rows, *self.batch_shape, self.num_variables), dtype=torch.long, device=self.device)

    def rollout(
        self, x: torch.Tensor, choose: Choose, *, active: Sequence[int] | None = None, record: bool = False
    ) -> torch.Tensor | None:
        """Fill ``x`` position by position, in place: ``x[:a_d, ..., d] = choose(conditional(x[:a_d], d), d)``.

        One call of ``conditional`` per position ``d`` with ``a_d > 0``.

        Args:
            x: ``LongTensor[M, *B, D]``; rows past ``a_d`` keep their ``x[..., d]``.
            choose: maps the checked logits ``[a_d, *B, K]`` and ``d`` to ``LongTensor[a_d, *B]``
                of possible categories.
            active: ``a_d``, how many leading rows to fill at each position (default: all
                ``M``); rows sorted by the position at which they start to be filled
                make each ``a_d`` a prefix.
            record: return the logits of every position; needs every row active.

        Returns:
            ``[M, *B, D, K]`` logits if ``record`` (with autograd if it is enabled), else ``None``.
        """
        rows = x.shape[0]
        active = [rows] * self.num_variables if active is None else active
        if record and any(count != rows for count in active):
            raise ValueError(f"active: record=True needs every row active, got {list(active)} for {rows} rows")
        recorded = []
        for d, count in enumerate(active):
            if count == 0:
                continue
            logits = self.logits_at(x[:count].clone() if torch.is_grad_enabled() else x[:count], d)
            x[:count, ..., d] = choose(logits, d)
            recorded.append(logits)
        return torch.stack(recorded, -2) if record else None

    def logits_at(self, x: torch.Tensor, d: int) -> torch.Tensor:
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
        check_category_logits(out.detach(), "conditional", f"of [M, *B] at d={d}")
        return out


def follow_noise(noise: torch.Tensor, rows: torch.Tensor | None = None) -> Choose:
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


def sequence_log_prob(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``sum_d log softmax(logits[..., d, :])[x_d]``: ``logits [*S, *B, D, K]``, ``x [*S, *B, D]`` -> ``[*S, *B]``."""
    return logits.log_softmax(-1).gather(-1, x.unsqueeze(-1)).squeeze(-1).sum(-1)
