"""The user's function ``f`` wrapped with its input encoding and output checks."""

from __future__ import annotations

from collections.abc import Callable

import torch

from catlog._validation import all_finite


class Objective:
    """``f`` as the estimators call it: encodes samples, checks and casts what ``f`` returns.

    Args:
        f: the user's function; receives ``LongTensor[M, *B, D]`` (or a float
            ``[M, *B, D, K]`` one-hot when ``one_hot``) and returns ``Tensor[M, *B]``.
        batch_shape: ``B``, the batch dimensions of the distribution.
        num_categories: ``K``, the size of the last logits dimension.
        dtype: floating dtype of the logits; ``f``'s output and one-hot inputs take it.
        device: the logits' device; ``f``'s output must be on it.
        one_hot: whether ``f`` takes one-hot vectors instead of category indices.
        validate: also check that the values ``f`` returns are finite (a host
            synchronisation) and that ``f`` leaves its input unchanged (by the input's
            version counter). Shapes, dtype and device are always checked.
        every_possible: validation found every logit finite, so every category of
            every variable is a valid input (false when it found ``-inf`` logits or did
            not look); lets an estimator skip looking for impossible categories.
        chunk_size: most rows per call of ``f``, or ``None`` for one call; each chunk's graph is
            kept for the backward pass, as one call's would be.
    """

    def __init__(
        self,
        f: Callable[[torch.Tensor], torch.Tensor],
        batch_shape: torch.Size,
        num_categories: int,
        dtype: torch.dtype,
        device: torch.device,
        one_hot: bool,
        validate: bool,
        *,
        every_possible: bool = False,
        chunk_size: int | None = None,
    ) -> None:
        if not callable(f):
            raise ValueError(
                f"f: expected a callable taking samples and returning Tensor[M, *B], got {type(f).__name__}"
            )
        self.f = f
        self.batch_shape = torch.Size(batch_shape)
        self.num_categories = num_categories
        self.dtype = dtype
        self.device = device
        self.one_hot = one_hot
        self.validate = validate
        self.every_possible = every_possible
        self.chunk_size = chunk_size

    def __call__(self, x: torch.Tensor, *, check_finite: bool = True) -> torch.Tensor:
        """``f(x)`` for samples ``x: LongTensor[M, *B, D]``, in chunks of rows; returns ``Tensor[M, *B]``.

        With ``check_finite=False`` the values are not checked to be finite (the other
        checks stay): the caller checks them later with :meth:`require_finite`, together
        with other values of ``f``, in one reduction and one host synchronisation
        instead of one per call.
        """
        return self.by_chunks(lambda rows: self._encoded(rows, check_finite), x)

    def relaxed(self, inputs: torch.Tensor) -> torch.Tensor:
        """``f`` on relaxed samples, in one call; returns ``Tensor[M, *B]``.

        ``inputs`` are what ``f`` takes: relaxed one-hot vectors ``[M, *B, D, K]`` when
        ``one_hot``, else relaxed category values ``sum_k k * y_k`` of shape ``[M, *B, D]``
        (equal to the category exactly when ``y`` is a hard one-hot).
        """
        return self._checked(self.f(inputs), inputs.shape[0])

    def by_chunks(self, evaluate: Callable[..., torch.Tensor], *rows: torch.Tensor) -> torch.Tensor:
        """``evaluate(*rows)`` (each ``[M, ...]``, rows first; returns ``[M, ...]``), called on
        chunks of at most ``chunk_size`` rows of every tensor of ``rows`` when it is set."""
        if self.chunk_size is None or rows[0].shape[0] <= self.chunk_size:
            return evaluate(*rows)
        chunks = zip(*(torch.split(tensor, self.chunk_size) for tensor in rows))
        return torch.cat([evaluate(*chunk) for chunk in chunks])

    def _encoded(self, x: torch.Tensor, check_finite: bool) -> torch.Tensor:
        """``f(x)`` for samples ``x: LongTensor[M, *B, D]``, one-hot encoded if ``one_hot``."""
        if self.one_hot:
            categories = torch.arange(self.num_categories, device=x.device)
            # a comparison, not F.one_hot: that checks the range of x, a host synchronisation
            return self._checked(self.f((x.unsqueeze(-1) == categories).to(self.dtype)), x.shape[0], check_finite)
        if not self.validate or x.is_inference():
            return self._checked(self.f(x), x.shape[0], check_finite)
        version = x._version
        out = self.f(x)
        if x._version != version:
            raise ValueError(
                "f: expected to leave its input unchanged (catlog reuses the samples), got an f that wrote "
                "into it in place; write into a copy (x = x.clone()) instead"
            )
        return self._checked(out, x.shape[0], check_finite)

    def relaxed_one_hot(self, one_hot: torch.Tensor) -> torch.Tensor:
        """``f`` on relaxed one-hot vectors ``[M, *B, D, K]``, encoded as :meth:`relaxed` takes them
        (the vectors themselves when ``one_hot``, else ``sum_k k * y_k``), in chunks of rows;
        returns ``Tensor[M, *B]``."""
        if self.one_hot:
            return self.by_chunks(self.relaxed, one_hot)
        categories = torch.arange(one_hot.shape[-1], dtype=one_hot.dtype, device=one_hot.device)
        return self.by_chunks(self.relaxed, one_hot @ categories)

    def require_finite(self, values: torch.Tensor) -> None:
        """With ``validate``, raise a ``ValueError`` unless every entry of ``values`` (values of
        ``f``, any shape, e.g. those of calls with ``check_finite=False`` put together) is finite."""
        if self.validate:
            detached = values.detach() if values.requires_grad else values
            if not all_finite(detached):
                bad = int((~torch.isfinite(detached)).sum())
                raise ValueError(
                    f"f: expected finite values, got NaN or infinite in {bad} of the {values.numel()} entries checked"
                )

    def _checked(self, out: object, rows: int, check_finite: bool = True) -> torch.Tensor:
        expected = (rows, *self.batch_shape)
        if not isinstance(out, torch.Tensor):
            raise ValueError(f"f: expected to return a torch.Tensor of shape {expected}, got {type(out).__name__}")
        if tuple(out.shape) != expected:
            raise ValueError(
                f"f: expected output of shape {expected} (one value per sample row and batch element), "
                f"got shape {tuple(out.shape)}"
            )
        if out.is_complex():
            raise ValueError(f"f: expected real values, got dtype {out.dtype}")
        if out.device != self.device:
            raise ValueError(f"f: expected output on {self.device} (the distribution's device), got {out.device}")
        if out.dtype != self.dtype:
            out = out.to(self.dtype)
        if check_finite:
            self.require_finite(out)
        return out
