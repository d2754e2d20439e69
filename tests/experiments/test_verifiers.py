"""The verifiers against plain Python: ``eval`` of the expression text, a DFA read letter by letter."""

from __future__ import annotations

import re

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from catlog.experiments.verifiers import (
    ARITHMETIC_TOKENS,
    DFA,
    END,
    arithmetic_reward,
    evaluate_expressions,
    expression_text,
    multiples_of,
    repeated_word,
)


def _python_value(text: str) -> int | None:
    """The value of the expression before the first ``.``, or ``None`` if it is not well formed."""
    expression = text.split(".")[0]
    if not re.fullmatch(r"\d+([+\-*]\d+)*", expression):
        return None
    return eval(re.sub(r"\d+", lambda m: str(int(m.group())), expression))  # noqa: S307 (digits and + - * only)


def test_random_expressions_evaluate_as_in_python() -> None:
    generator = torch.Generator().manual_seed(0)
    # mostly digits, so that many expressions are well formed
    weights = torch.tensor([3.0] * 10 + [2.0, 2.0, 2.0, 1.0])
    tokens = torch.multinomial(weights, 4000 * 9, replacement=True, generator=generator).view(4000, 9)
    value, valid = evaluate_expressions(tokens)
    expected = [_python_value(expression_text(row)) for row in tokens]
    assert valid.tolist() == [e is not None for e in expected]
    assert sum(e is not None for e in expected) > 500
    assert all(v == e for v, e in zip(value.tolist(), expected) if e is not None)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, ARITHMETIC_TOKENS - 1), min_size=1, max_size=12))
def test_every_expression_evaluates_as_in_python(tokens: list[int]) -> None:
    value, valid = evaluate_expressions(torch.tensor(tokens))
    expected = _python_value(expression_text(torch.tensor(tokens)))
    assert bool(valid) == (expected is not None)
    if expected is not None:
        assert int(value) == expected


@pytest.mark.parametrize(
    ("text", "target", "reward"),
    [
        ("12+3*4.", 24, 1.0),
        ("12+3*4.", 60, 0.0),
        ("7-10...", -3, 1.0),
        ("+7....", 7, 0.0),
        ("7*.", 7, 0.0),
        (".7", 7, 0.0),
    ],
)
def test_arithmetic_reward(text: str, target: int, reward: float) -> None:
    tokens = torch.tensor(["0123456789+-*.".index(c) for c in text])
    assert float(arithmetic_reward(tokens, torch.tensor(target))) == reward


def test_the_reward_broadcasts_targets_over_samples() -> None:
    tokens = torch.tensor([[[3, 12, 4, END], [9, END, END, END]]])  # [M = 1, B = 2, D = 4]
    assert arithmetic_reward(tokens.expand(5, 2, 4), torch.tensor([12, 9])).tolist() == [[1.0, 1.0]] * 5


def test_long_expressions_are_refused() -> None:
    with pytest.raises(ValueError, match="^tokens: expected at most 16 positions"):
        evaluate_expressions(torch.zeros(17, dtype=torch.long))


def _python_longest_prefix(dfa: DFA, word: list[int]) -> int:
    state, best = dfa.start, 0
    for length, token in enumerate(word, start=1):
        state = int(dfa.transitions[state, token])
        if bool(dfa.accepting[state]):
            best = length
    return best


@pytest.mark.parametrize("dfa", [repeated_word("abac", "abc"), multiples_of(3), multiples_of(5, base=3)])
def test_dfa_longest_accepted_prefix_and_acceptance_as_read_letter_by_letter(dfa: DFA) -> None:
    generator = torch.Generator().manual_seed(1)
    tokens = torch.randint(dfa.num_tokens, (500, 8), generator=generator)
    if dfa.num_tokens == 3:  # plant words of the language so that long prefixes occur
        tokens[:100] = torch.tensor([0, 1, 0, 2, 0, 1, 0, 2])
        tokens[100:200, 4:] = torch.randint(3, (100, 4), generator=generator)
    longest = dfa.longest_accepted_prefix(tokens)
    assert longest.tolist() == [_python_longest_prefix(dfa, row.tolist()) for row in tokens]
    assert torch.equal(dfa.reward(tokens), longest / 8)
    assert dfa.accepts(tokens).tolist() == [bool(dfa.accepting[dfa.states(row)[-1]]) for row in tokens]


def test_repeated_word_accepts_copies_only() -> None:
    dfa = repeated_word("ab", "ab")
    words = torch.tensor([[0, 1, 0, 1], [0, 1, 1, 0], [1, 0, 1, 0]])
    assert dfa.accepts(words).tolist() == [True, False, False]
    assert dfa.longest_accepted_prefix(words).tolist() == [4, 2, 0]


def test_multiples_of_three_in_binary() -> None:
    numbers = torch.arange(64)
    bits = (numbers[:, None] >> torch.arange(5, -1, -1)) & 1
    assert torch.equal(multiples_of(3).accepts(bits), numbers % 3 == 0)


def test_bad_automata_are_refused() -> None:
    with pytest.raises(ValueError, match="^accepting: expected shape"):
        DFA(torch.zeros(3, 2, dtype=torch.long), torch.zeros(2, dtype=torch.bool))
    with pytest.raises(ValueError, match="^start: expected a state in"):
        DFA(torch.zeros(3, 2, dtype=torch.long), torch.zeros(3, dtype=torch.bool), start=3)
    with pytest.raises(ValueError, match="^word: expected a non-empty word"):
        repeated_word("abd", "abc")
