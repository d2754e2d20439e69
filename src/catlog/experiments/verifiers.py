"""Programs that check generated token sequences, vectorised over any batch (a loop over positions only).

:func:`evaluate_expressions` reads arithmetic over the digits and ``+ - *`` (precedence,
multi-digit numbers, an end token) and :func:`arithmetic_reward` gives 1 where it equals the
target; :class:`DFA` runs an automaton as a table gather per position, :meth:`DFA.reward` the
partial credit of the longest accepted prefix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

# The arithmetic vocabulary: tokens 0-9 are the digits, then the operators and the end token.
PLUS, MINUS, TIMES, END = 10, 11, 12, 13
ARITHMETIC_TOKENS = 14
SYMBOLS = "0123456789+-*."
# Expressions of at most this many tokens cannot overflow int64 (numbers below 10**16).
MAX_EXPRESSION_LENGTH = 16


class Evaluated(NamedTuple):
    """The value of expressions and whether each is well formed.

    Attributes:
        value: ``LongTensor[*S]`` (meaningless where not ``valid``).
        valid: ``BoolTensor[*S]``: a non-empty alternation of numbers and operators that
            starts and ends with a number (before the first end token).
    """

    value: torch.Tensor
    valid: torch.Tensor


def evaluate_expressions(tokens: torch.Tensor) -> Evaluated:
    """Evaluate ``tokens: LongTensor[*S, D]`` (:data:`ARITHMETIC_TOKENS` symbols) as arithmetic expressions.

    A left-to-right scan keeps, per sequence, the sum of closed terms ``total``, the sign
    of the open term, the product ``term`` of its closed factors and the number being
    read ``number``: a digit makes ``number = 10 number + digit``; ``*`` closes a factor,
    ``term *= number``; ``+``/``-`` closes a term, ``total += sign * term * number``; the
    end token (or the last position) closes the expression. Value:
    ``total + sign * term * number``.

    Raises:
        ValueError: ``D > MAX_EXPRESSION_LENGTH`` (the value could overflow).
    """
    if tokens.shape[-1] > MAX_EXPRESSION_LENGTH:
        raise ValueError(
            f"tokens: expected at most {MAX_EXPRESSION_LENGTH} positions, got {tokens.shape[-1]} (int64 overflow)"
        )
    shape = tokens.shape[:-1]
    zeros = torch.zeros(shape, dtype=torch.long, device=tokens.device)
    total, number, sign, term = zeros, zeros, zeros + 1, zeros + 1
    valid = torch.ones(shape, dtype=torch.bool, device=tokens.device)
    ended, after_digit = ~valid, ~valid
    for t in range(tokens.shape[-1]):
        token = tokens[..., t]
        ended = ended | (token == END)
        digit = ~ended & (token < PLUS)
        operator = ~ended & (token >= PLUS) & (token <= TIMES)
        valid = valid & ~(operator & ~after_digit)
        number = torch.where(digit, 10 * number + token, number)
        closes_term = operator & (token != TIMES)
        total = torch.where(closes_term, total + sign * term * number, total)
        term = torch.where(operator & (token == TIMES), term * number, torch.where(closes_term, 1, term))
        sign = torch.where(closes_term, torch.where(token == PLUS, 1, -1), sign)
        number = torch.where(operator, 0, number)
        after_digit = torch.where(digit, True, torch.where(operator, False, after_digit))
    return Evaluated(total + sign * term * number, valid & after_digit)


def arithmetic_reward(tokens: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``1[expression is valid and equals its target]``: ``tokens [*S, D]``, ``targets`` broadcast to ``[*S]``."""
    value, valid = evaluate_expressions(tokens)
    return (valid & (value == targets)).to(torch.get_default_dtype())


def expression_text(tokens: torch.Tensor) -> str:
    """The expression ``tokens: LongTensor[D]`` as text, ``.`` for the end token: e.g. ``"3*4+1."``."""
    return "".join(SYMBOLS[int(token)] for token in tokens)


@dataclass(frozen=True)
class DFA:
    """A deterministic finite automaton over ``K`` tokens: ``q_{t+1} = transitions[q_t, x_t]``.

    Attributes:
        transitions: ``LongTensor[Q, K]``.
        accepting: ``BoolTensor[Q]``.
        start: the initial state ``q_0``.
    """

    transitions: torch.Tensor
    accepting: torch.Tensor
    start: int = 0

    def __post_init__(self) -> None:
        states = self.transitions.shape[0]
        if self.transitions.ndim != 2 or self.accepting.shape != (states,):
            raise ValueError(
                f"accepting: expected shape [Q] = [{states}] for transitions [Q, K], got "
                f"{tuple(self.accepting.shape)} and {tuple(self.transitions.shape)}"
            )
        if not 0 <= self.start < states:
            raise ValueError(f"start: expected a state in [0, {states}), got {self.start}")

    @property
    def num_tokens(self) -> int:
        """``K``."""
        return int(self.transitions.shape[1])

    def states(self, tokens: torch.Tensor) -> torch.Tensor:
        """``q_0 .. q_D``: ``LongTensor[*S, D + 1]`` for ``tokens: LongTensor[*S, D]``."""
        state = torch.full(tokens.shape[:-1], self.start, dtype=torch.long, device=tokens.device)
        visited = [state]
        for t in range(tokens.shape[-1]):
            state = self.transitions[state, tokens[..., t]]
            visited.append(state)
        return torch.stack(visited, -1)

    def longest_accepted_prefix(self, tokens: torch.Tensor) -> torch.Tensor:
        """``max {L : x_<L is accepted}`` (0 when no prefix, the empty one included, is): ``LongTensor[*S]``."""
        accepted = self.accepting[self.states(tokens)]
        lengths = torch.arange(tokens.shape[-1] + 1, device=tokens.device)
        return torch.where(accepted, lengths, 0).amax(-1)

    def accepts(self, tokens: torch.Tensor) -> torch.Tensor:
        """Whether the whole sequence is in the language: ``BoolTensor[*S]``."""
        return self.accepting[self.states(tokens)[..., -1]]

    def reward(self, tokens: torch.Tensor) -> torch.Tensor:
        """The partial credit ``longest accepted prefix / D``, in ``[0, 1]``: ``[*S]``."""
        return self.longest_accepted_prefix(tokens).to(torch.get_default_dtype()) / tokens.shape[-1]


def repeated_word(word: str, alphabet: str) -> DFA:
    """The DFA of ``(word)*`` over the letters of ``alphabet``: states ``0..len(word)-1``
    count the letters of the current copy read so far, and a dead state takes any wrong letter.

    E.g. ``repeated_word("abac", "abc")`` accepts ``"", "abac", "abacabac", ...``.
    """
    if not word or set(word) - set(alphabet):
        raise ValueError(f"word: expected a non-empty word over {alphabet!r}, got {word!r}")
    length, dead = len(word), len(word)
    transitions = torch.full((length + 1, len(alphabet)), dead, dtype=torch.long)
    for position, letter in enumerate(word):
        transitions[position, alphabet.index(letter)] = (position + 1) % length
    accepting = torch.zeros(length + 1, dtype=torch.bool)
    accepting[0] = True
    return DFA(transitions, accepting)


def multiples_of(modulus: int, base: int = 2) -> DFA:
    """The DFA of base-``base`` numerals (most significant digit first) divisible by ``modulus``:
    ``q_{t+1} = (base q_t + x_t) mod modulus``, accepting ``q = 0``."""
    if modulus < 1 or base < 2:
        raise ValueError(f"modulus, base: expected modulus >= 1 and base >= 2, got {modulus} and {base}")
    states = torch.arange(modulus)[:, None]
    return DFA((base * states + torch.arange(base)) % modulus, torch.arange(modulus) == 0)
