"""``catlog generate``: a sequence model trained against a reward that a program checks.

A GRU (:mod:`catlog.experiments.policies`) emits ``D`` (``--length``) tokens from a
vocabulary of ``K``, reading the previous tokens and a context; a verifier
(:mod:`catlog.experiments.verifiers`) scores the result:

- ``--task arithmetic``: an expression over the digits and ``+ - *`` (``K = 14`` with
  the end token) must evaluate to the target number given as context (its decimal
  digits, one-hot): reward 1 if it does, else 0. The targets ``0 .. --targets - 1``
  are split: every ``--heldout-every``-th of a fixed shuffle is held out of training
  and measures generalisation (``heldout_success_rate``).
- ``--task dfa``: a string of the regular language ``--language`` (``abac``:
  ``(abac)*`` over ``a, b, c``; ``mod3``: binary numerals divisible by 3), with the
  partial credit ``longest accepted prefix / D``; no context.

``success_rate`` is the fraction of sampled sequences that the verifier accepts
whole, ``return`` the mean reward. Training loop, options and files:
:mod:`catlog.experiments.policy_training`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

import catlog
from catlog.experiments import policy_training
from catlog.experiments.options import Command, OptionError, option
from catlog.experiments.policies import SequencePolicy, previous_choices
from catlog.experiments.verifiers import (
    ARITHMETIC_TOKENS,
    DFA,
    MAX_EXPRESSION_LENGTH,
    arithmetic_reward,
    multiples_of,
    repeated_word,
)

TASKS: tuple[str, ...] = ("arithmetic", "dfa")
LANGUAGES: dict[str, Callable[[], DFA]] = {
    "abac": lambda: repeated_word("abac", "abc"),
    "mod3": lambda: multiples_of(3),
}
TARGET_DIGITS = 3
# The held-out targets are every n-th of one fixed shuffle, the same for every --seed.
HELDOUT_SEED = 0

# (tokens [M, B, D], targets [B]) -> [M, B]
Verifier = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True, kw_only=True)
class GenerateConfig(policy_training.PolicyTrainingConfig):
    """Settings of ``catlog generate``: the task, the sequence length, the targets, and training."""

    task: str = option("arithmetic", "what the verifier checks", choices=TASKS)
    length: int = option(5, "tokens per sequence D", minimum=1)
    targets: int = option(50, "arithmetic: the targets 0 .. TARGETS - 1", minimum=2, metavar="TARGETS")
    heldout_every: int = option(5, "arithmetic: every n-th target (of a fixed shuffle) is held out", minimum=2)
    language: str = option("abac", "dfa: the regular language", choices=tuple(LANGUAGES))

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.task == "arithmetic" and self.length > MAX_EXPRESSION_LENGTH:
            raise OptionError(
                "--length", f"expected at most {MAX_EXPRESSION_LENGTH} tokens for arithmetic, got {self.length}"
            )
        if self.targets > 10**TARGET_DIGITS:
            raise OptionError("--targets", f"expected at most {10**TARGET_DIGITS}, got {self.targets}")


def digit_features(targets: torch.Tensor) -> torch.Tensor:
    """The decimal digits of ``targets: LongTensor[B]`` (< 10**3), one-hot: ``[B, 30]``."""
    digits = targets[:, None] // 10 ** torch.arange(TARGET_DIGITS) % 10
    return torch.nn.functional.one_hot(digits, 10).flatten(1)


class GenerationTask:
    """Sequences of ``D = length`` tokens of ``K = num_tokens`` for the targets of each of ``splits``
    (``"train"`` is trained on, the others only measured): ``verify`` gives the reward ``[M, B]`` of
    tokens ``[M, B, D]`` for targets ``[B]``, ``accept`` whether it accepts them whole, ``features``
    the context ``[B, C]`` of targets ``[B]``; rewards in ``dtype``."""

    def __init__(
        self,
        verify: Verifier,
        accept: Verifier,
        splits: dict[str, torch.Tensor],
        features: Callable[[torch.Tensor], torch.Tensor],
        length: int,
        num_tokens: int,
        dtype: torch.dtype,
    ) -> None:
        self.verify, self.accept, self.splits = verify, accept, splits
        self.contexts = {name: features(targets).to(dtype) for name, targets in splits.items()}
        self.num_variables, self.num_categories, self.dtype = length, num_tokens, dtype

    def policy(self, hidden: int) -> SequencePolicy:
        """A GRU reading the previous tokens (and a start token), the target's features as its context."""
        return SequencePolicy(self.num_categories + 1, self.num_categories, self.contexts["train"].shape[-1], hidden)

    def _distribution(self, policy: torch.nn.Module, split: str) -> catlog.Autoregressive:
        assert isinstance(policy, SequencePolicy)
        return policy.distribution(self.contexts[split], self.num_variables, previous_choices(self.num_categories))

    def distribution(self, policy: torch.nn.Module) -> catlog.Autoregressive:
        """The policy's sequences for the training targets, batch ``[B]``."""
        return self._distribution(policy, "train")

    def reward(self, x: torch.Tensor) -> torch.Tensor:
        """The verifier's reward of ``x: LongTensor[M, B, D]`` for the training targets: ``[M, B]``."""
        return self.verify(x, self.splits["train"]).to(self.dtype)

    def evaluate(self, policy: torch.nn.Module, samples: int, generator: torch.Generator) -> dict[str, float]:
        """``success_rate`` and ``return`` on the training targets, ``heldout_``-prefixed on the held-out ones."""
        metrics = {}
        for split, targets in self.splits.items():
            x = self._distribution(policy, split).sample((samples,), generator=generator)
            prefix = "" if split == "train" else f"{split}_"
            metrics[f"{prefix}success_rate"] = float(self.accept(x, targets).double().mean())
            metrics[f"{prefix}return"] = float(self.verify(x, targets).double().mean())
        return metrics


def make_task(config: GenerateConfig) -> GenerationTask:
    """The generation task of ``config``."""
    if config.task == "arithmetic":
        shuffled = torch.randperm(config.targets, generator=torch.Generator().manual_seed(HELDOUT_SEED))
        heldout = shuffled[config.heldout_every - 1 :: config.heldout_every].sort().values
        train = shuffled[torch.isin(shuffled, heldout, invert=True)].sort().values
        return GenerationTask(
            arithmetic_reward,
            lambda x, t: arithmetic_reward(x, t) > 0,
            {"train": train, "heldout": heldout},
            digit_features,
            config.length,
            ARITHMETIC_TOKENS,
            config.torch_dtype,
        )
    dfa = LANGUAGES[config.language]()
    return GenerationTask(
        lambda x, _: dfa.reward(x),
        lambda x, _: dfa.accepts(x),
        {"train": torch.zeros(1, dtype=torch.long)},
        lambda targets: torch.ones(len(targets), 1),
        config.length,
        dfa.num_tokens,
        config.torch_dtype,
    )


COMMAND = Command(
    "generate",
    help="train a sequence model against a verifiable reward (arithmetic, regular languages)",
    description=__doc__ or "",
    config=GenerateConfig,
    run=lambda config: policy_training.run(config, "generate", make_task),
)
