"""Command options declared once: each config field carries its flag's help text and bounds.

A command's config is a frozen, keyword-only dataclass of :func:`option` fields, e.g.
``runs: int = option(100, "repeated estimates per estimator", minimum=2)``. From it
:func:`add_arguments` builds ``--runs`` (type from the annotation, the default said once in
``--help``) and :func:`validate` checks every value (bounds, choices, finite numbers) whenever
the config is built; checks across fields go in ``__post_init__``. :class:`Command` binds a
config class to the function that runs it.
"""

from __future__ import annotations

import argparse
import math
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

import torch

from catlog.experiments import common

T = TypeVar("T")
DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "float64": torch.float64}
COMMON_GROUP = "common options"


class OptionError(ValueError):
    """A command-line option with a value that cannot work; the CLI turns it into a usage error (exit 2).

    Attributes:
        option: the option's flag, e.g. ``--log-every``.
    """

    def __init__(self, option: str, message: str) -> None:
        super().__init__(f"{option}: {message}")
        self.option = option


def check_at_least(option: str, value: float, minimum: float) -> None:
    """Raise :class:`OptionError` for ``option`` unless ``value >= minimum``."""
    if value < minimum:
        raise OptionError(option, f"expected a value >= {minimum}, got {value}")


def check_multiple(option: str, value: int, of_option: str, of: int) -> None:
    """Raise :class:`OptionError` for ``option`` unless ``value`` is a multiple of ``of`` (``of_option``'s value)."""
    if value % of:
        raise OptionError(option, f"expected a multiple of {of_option} ({of}), got {value}")


def check_applies(option: str, name: str, estimator: Any, num_variables: int, num_categories: int) -> None:
    """Raise :class:`OptionError` for ``option`` unless ``estimator`` (named ``name``) applies to ``D`` variables
    of ``K`` categories (its :meth:`~catlog.Estimator.cost` accepts them)."""
    try:
        estimator.cost(num_variables, num_categories)
    except ValueError as error:
        raise OptionError(
            option, f"{name} does not apply to D = {num_variables}, K = {num_categories}: {error}"
        ) from None


def parse_size(text: str) -> tuple[int, int]:
    """A problem size ``DxK`` from the command line: ``"12x3"`` -> ``(12, 3)``."""
    try:
        num_variables, num_categories = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a config DxK such as 12x3, got {text!r}") from None
    if num_variables < 1 or num_categories < 2:
        raise argparse.ArgumentTypeError(f"expected D >= 1 and K >= 2, got {text!r}")
    return num_variables, num_categories


def show_size(configs: tuple[int, int] | tuple[tuple[int, int], ...]) -> str:
    """``(12, 3)`` -> ``"12x3"``; several configs space-separated."""
    if configs and isinstance(configs[0], tuple):
        return " ".join(show_size(config) for config in configs)
    return "x".join(map(str, configs))


@dataclass(frozen=True)
class Option:
    """How a config field appears on the command line: its ``help`` (``--help`` adds the default once),
    bounds on each value (``>= minimum``, ``> above``), ``choices``, extra ``flags`` (``("-D",)``),
    ``parse`` (a word to a value; default: the annotated type), ``show`` (a value for ``--help``),
    ``metavar``, ``group`` (the ``--help`` section), ``default_text`` (said instead of the default)
    and ``empty`` (a tuple option may take no values)."""

    help: str
    minimum: float | None = None
    above: float | None = None
    choices: Sequence[str] | None = None
    flags: tuple[str, ...] = ()
    parse: Callable[[str], Any] | None = None
    show: Callable[[Any], str] | None = None
    metavar: str | None = None
    group: str | None = None
    default_text: str | None = None
    empty: bool = False


def option(default: Any = MISSING, help: str = "", **spec: Any) -> Any:
    """A dataclass field that is also the option ``--<name>`` (positional without ``default``); ``help``
    and ``spec`` make its :class:`Option`."""
    return field(default=default, metadata={"option": Option(help, **spec)})


def declared(config_type: type[Any]) -> list[tuple[str, Any, Option, Any]]:
    """``(name, annotated type, Option, default)`` for every field of ``config_type`` made by :func:`option`,
    those the class itself declares first, then its bases' (so ``--help`` starts with the command's own)."""
    hints = typing.get_type_hints(config_type)
    place: dict[str, tuple[int, int]] = {}  # (the declaring class's place in the MRO, the field's in that class)
    for depth, cls in reversed(list(enumerate(config_type.__mro__))):
        place.update((name, (depth, index)) for index, name in enumerate(vars(cls).get("__annotations__", {})))
    ordered = sorted((f for f in fields(config_type) if "option" in f.metadata), key=lambda f: place[f.name])
    return [(f.name, hints[f.name], f.metadata["option"], f.default) for f in ordered]


def _element_type(hint: Any) -> tuple[Any, bool]:
    """``(type of one value, whether the option takes several)`` of an annotation such as
    ``int``, ``Path | None`` or ``tuple[str, ...]``."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        hint = next(arg for arg in typing.get_args(hint) if arg is not type(None))
    if typing.get_origin(hint) is tuple and typing.get_args(hint)[-1:] == (Ellipsis,):
        return typing.get_args(hint)[0], True
    return hint, False


def _show(value: Any, spec: Option) -> str:
    if spec.show is not None:
        return spec.show(value)
    if isinstance(value, tuple):
        return " ".join(_show(item, spec) for item in value)
    return str(value)


def add_arguments(parser: argparse.ArgumentParser, config_type: type[Any]) -> None:
    """Add an argument to ``parser`` for every :func:`option` field of ``config_type`` (``bool``: a flag,
    ``tuple[X, ...]``: one or more values); the help ends with the default, said once."""
    groups: dict[str, Any] = {}
    for name, hint, spec, default in declared(config_type):
        if spec.group is not None and spec.group not in groups:
            groups[spec.group] = parser.add_argument_group(spec.group)
        target = parser if spec.group is None else groups[spec.group]
        element, several = _element_type(hint)
        kwargs: dict[str, Any] = {"help": spec.help}
        if default is not MISSING and default is not False:
            shown = spec.default_text if spec.default_text is not None else _show(default, spec)
            kwargs["help"] = f"{spec.help} (default: {shown})"
        if element is bool:
            kwargs["action"] = "store_true"
        else:
            kwargs.update(type=spec.parse or element, choices=spec.choices, metavar=spec.metavar)
            kwargs.update({"nargs": "*" if spec.empty else "+"} if several else {})
            kwargs.update({} if default is MISSING else {"default": default})
        target.add_argument(flag(name, default), *spec.flags, **kwargs)


def flag(name: str, default: Any) -> str:
    """How the option ``name`` is written on the command line: ``--name``, or ``name`` when positional."""
    return name if default is MISSING else f"--{name.replace('_', '-')}"


def option_argv(options: Mapping[str, Any]) -> list[str]:
    """``{name: value}`` as command-line words: ``--name value``; ``True`` a bare flag,
    ``False``/``None`` nothing, a list ``--name v1 v2`` (the flag as :func:`flag` writes it)."""
    words: list[str] = []
    for name, value in options.items():
        option_flag = flag(name, value)
        if value is True:
            words.append(option_flag)
        elif isinstance(value, list):
            words += [option_flag, *map(str, value)]
        elif value is not False and value is not None:
            words += [option_flag, str(value)]
    return words


def _check_value(option_flag: str, value: Any, spec: Option) -> None:
    if spec.choices is not None and value not in spec.choices:
        raise OptionError(option_flag, f"expected one of {', '.join(map(str, spec.choices))}, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise OptionError(option_flag, f"expected a finite number, got {value}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if spec.minimum is not None:
            check_at_least(option_flag, value, spec.minimum)
        if spec.above is not None and not value > spec.above:
            raise OptionError(option_flag, f"expected a value > {spec.above}, got {value}")


def validate(config: Any) -> None:
    """Check every :func:`option` field of ``config``; an :class:`OptionError` names the option, what was
    expected and what came."""
    for name, _, spec, default in declared(type(config)):
        value = getattr(config, name)
        if value is None and default is None:
            continue
        for item in value if isinstance(value, tuple) and spec.parse is None else (value,):
            _check_value(flag(name, default), item, spec)


@dataclass(frozen=True, kw_only=True)
class Options:
    """Base of every command's config: the declared values are checked (:func:`validate`) when it is built."""

    def __post_init__(self) -> None:
        validate(self)


@dataclass(frozen=True, kw_only=True)
class RunOptions(Options):
    """The options of every command that writes a run folder (each field's help says what it is)."""

    out: Path | None = option(
        None, "run folder", group=COMMON_GROUP, default_text="a fresh timestamped folder under results/"
    )
    overwrite: bool = option(False, "delete the results already in --out and start the run again", group=COMMON_GROUP)
    device: str = option("cpu", "torch device to run on, e.g. cpu, cuda, cuda:1", group=COMMON_GROUP)
    seed: int = option(0, "random seed", group=COMMON_GROUP)
    dtype: str = option(
        "float32", "floating point precision of parameters and estimates", choices=tuple(DTYPES), group=COMMON_GROUP
    )
    threads: int | None = option(
        None,
        "torch CPU threads; 1 is often fastest for small tensors",
        minimum=1,
        group=COMMON_GROUP,
        default_text="torch's choice",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.out is not None and self.out.exists() and not self.out.is_dir():
            raise OptionError("--out", f"expected a run folder, got {str(self.out)!r}, an existing file")
        try:
            device = torch.device(self.device)
        except RuntimeError:
            raise OptionError(
                "--device", f"expected a torch device such as cpu or cuda:0, got {self.device!r}"
            ) from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise OptionError(
                "--device", f"expected an available device, got {self.device!r} but CUDA is not available"
            )

    @property
    def torch_dtype(self) -> torch.dtype:
        """The torch dtype named by :attr:`dtype`."""
        return DTYPES[self.dtype]


def config_from_args(config_type: type[T], args: argparse.Namespace) -> T:
    """``config_type`` (a dataclass) built from the parsed options of the same names (lists become tuples)."""
    names = {f.name for f in fields(config_type)}  # type: ignore[arg-type]
    values = {name: tuple(v) if isinstance(v, list) else v for name, v in vars(args).items() if name in names}
    return config_type(**values)


def config_json(config: Any) -> dict[str, Any]:
    """A config dataclass as a JSON-able dict (paths as strings, tuples as lists); fields not made by
    :func:`option` (derived values) are left out."""

    def plain(value: Any) -> Any:
        if isinstance(value, Path):
            return str(value)
        if isinstance(value, (tuple, list)):
            return [plain(item) for item in value]
        return value

    options = {f.name for f in fields(config) if "option" in f.metadata}
    return {key: plain(value) for key, value in asdict(config).items() if key in options}


def add_common_options(parser: argparse.ArgumentParser) -> None:
    """For scripts beside the commands (benchmarks): add the options of :class:`RunOptions`
    (``--out``, ``--device``, ``--seed`` ...) to ``parser``."""
    add_arguments(parser, RunOptions)


def apply_common_options(args: argparse.Namespace) -> tuple[torch.device, torch.dtype]:
    """For scripts beside the commands (benchmarks): check the common options of ``args``
    (:class:`RunOptions`), set the threads and return ``(device, dtype)``."""
    run = config_from_args(RunOptions, args)
    common.apply_threads(run.threads)
    return torch.device(run.device), run.torch_dtype


@dataclass(frozen=True)
class Command:
    """One ``catlog`` subcommand: its ``name``, a line of ``help`` for ``catlog --help``, the
    ``description`` of ``catlog NAME --help`` (the module docstring), its ``config`` class (whose
    fields are its options) and ``run``, which runs a config and returns the exit status."""

    name: str
    help: str
    description: str
    config: type[Options]
    run: Callable[[Any], int]
