"""Argument checks shared by the estimators; each raises a ``ValueError`` that names
the argument, what was expected and what came."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any, Generic, TypeVar, overload

import torch

Choice = TypeVar("Choice", bound=str)
Value = TypeVar("Value")
# The most samples one estimate may draw: past it the sample tensors overflow torch's storage sizes.
MAX_SAMPLES = 2**32


def check_logits(logits: torch.Tensor, name: str) -> torch.Tensor:
    """Check the metadata of ``logits: Tensor[*B, D, K]`` and return it (no host synchronisation).

    A floating-point tensor with at least two dimensions, ``D, K >= 1``, not on the
    meta device. Its values are checked by :func:`check_category_logits`.
    """
    if not logits.is_floating_point():
        raise ValueError(f"{name}: expected floating-point logits, got dtype {logits.dtype}")
    if logits.ndim < 2 or logits.shape[-1] == 0 or logits.shape[-2] == 0:
        raise ValueError(
            f"{name}: expected logits of shape [*B, D, K] with at least two dimensions and D, K >= 1, "
            f"got shape {tuple(logits.shape)}"
        )
    check_device(name, logits.device)
    return logits


def check_device(name: str, device: torch.device) -> None:
    """Refuse the meta device: its tensors hold no values to sample from."""
    if device.type == "meta":
        raise ValueError(f"{name}: expected a device holding data (cpu, cuda, ...), got the meta device")


def check_flag(name: str, value: object) -> bool:
    """Check that ``value`` is a ``bool`` (not merely truthy) and return it."""
    if not isinstance(value, bool):
        raise ValueError(f"{name}: expected True or False, got {value!r} of type {type(value).__name__}")
    return value


def check_generator(name: str, generator: object) -> torch.Generator | None:
    """Check that ``generator`` is ``None`` or a ``torch.Generator`` and return it."""
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(
            f"{name}: expected a torch.Generator or None, got {generator!r} of type {type(generator).__name__}"
        )
    return generator


def check_generator_device(generator: torch.Generator | None, device: torch.device, where: str) -> None:
    """Check that ``generator`` draws on ``device`` (the device of ``where``)."""
    if generator is not None and generator.device.type != device.type:
        raise ValueError(
            f"generator: expected a generator on {device.type} (the device of {where}), got one on {generator.device}"
        )


def all_finite(values: torch.Tensor) -> bool:
    """Whether every entry of ``values`` is finite (true when there is none).

    One reduction and one host synchronisation on the common path: a sum is finite only
    if every term is (NaN and infinities propagate). A sum that overflows is looked at
    again by ``amax`` of ``|values|``, which propagates NaN (``isfinite(values).all()``
    takes four ops).
    """
    return math.isfinite(values.sum()) or (values.numel() > 0 and math.isfinite(values.abs().amax()))


def check_category_logits(values: torch.Tensor, name: str, where: str) -> bool:
    """Check that ``values: [..., K]`` are finite or ``-inf``, with a finite entry in every row.

    One reduction on the common path (all finite: the largest ``|value|`` is finite);
    otherwise a ``ValueError`` naming ``name`` that counts the NaN and ``+inf`` entries
    or gives the first row whose entries are all ``-inf`` (its index, ``where`` saying of what).

    Returns:
        whether every value is finite (every category possible); false when some are ``-inf``.
    """
    if all_finite(values):
        return True
    possible = values > -math.inf
    if bool((torch.isfinite(values) | (values == -math.inf)).all() & possible.any(-1).all()):
        return False
    nan, pos_inf = int(torch.isnan(values).sum()), int((values == math.inf).sum())
    if nan or pos_inf:
        raise ValueError(
            f"{name}: expected finite values or -inf (impossible category), got {nan} NaN and {pos_inf} +inf entries"
        )
    empty = (~possible.any(-1)).nonzero().tolist()
    raise ValueError(
        f"{name}: expected at least one possible (finite) category per variable, got {len(empty)} "
        f"variable(s) with all logits -inf, first at index {tuple(empty[0])} {where}"
    )


def check_count(name: str, value: object, minimum: int, maximum: int | None = None) -> int:
    """Check that ``value`` is an integer ``>= minimum`` (and ``<= maximum`` if given) and return it as ``int``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r} of type {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value}")
    if maximum is not None and int(value) > maximum:
        raise ValueError(f"{name}: expected an integer <= {maximum} (tensors of more samples overflow), got {value}")
    return int(value)


def check_samples(minimum: int) -> Callable[[str, object], int]:
    """The check of a sample count: an integer in ``[minimum, MAX_SAMPLES]``."""
    return lambda name, value: check_count(name, value, minimum, MAX_SAMPLES)


def check_chunk_size(name: str, value: object) -> int | None:
    """A chunk size: ``None`` (no chunks) or an integer ``>= 1``."""
    return None if value is None else check_count(name, value, 1)


def check_states(name: str, value: object) -> int:
    """A bound on enumerated states: an integer ``>= 1``."""
    return check_count(name, value, 1)


class Checked(Generic[Value]):
    """An estimator hyper-parameter checked on every assignment, construction or later
    (``est.num_samples = 0`` raises as ``IndeCateR(0)`` does).

    Args:
        check: ``check(name, value)`` returns the value to store or raises ``ValueError``.
    """

    def __init__(self, check: Callable[[str, object], Value]) -> None:
        self.check = check
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, instance: None, owner: type) -> Checked[Value]: ...

    @overload
    def __get__(self, instance: object, owner: type) -> Value: ...

    def __get__(self, instance: object | None, owner: type) -> Any:
        return self if instance is None else instance.__dict__[self.name]

    def __set__(self, instance: object, value: object) -> None:
        instance.__dict__[self.name] = self.check(self.name, value)


def check_positive(name: str, value: object) -> float:
    """Check that ``value`` is a finite real number ``> 0`` and return it as ``float``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name}: expected a finite number > 0, got {value!r}")
    return float(value)


def check_choice(name: str, value: object, allowed: tuple[Choice, ...]) -> Choice:
    """Check that ``value`` is one of the strings ``allowed`` and return it."""
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{name}: expected one of {', '.join(map(repr, allowed))}, got {value!r}")
    return allowed[allowed.index(value)]
