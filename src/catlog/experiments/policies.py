"""An autoregressive policy over a sequence of ``D`` choices from ``K``, as a ``catlog.Autoregressive``.

The policy is a GRU whose initial state encodes a context ``c`` (a start state, a
target number) and which reads one input token per step:

    h_0 = tanh(W_c c),  h_t = GRU(h_{t-1}, E[u_t]),  logits(x_d | x_<d, c) = W_o h_d,

where ``u_0 .. u_d`` are the inputs of position ``d``, computed from the prefix
``x_<d`` by an :data:`Inputs` function: the previous choices after a start token
(:func:`previous_choices`, open loop) or the states a simulator reaches
(``catlog plan --condition states``, closed loop). The GRU reads the ``d + 1``
inputs of position ``d`` afresh at every call, so each conditional reads the prefix
only, as :class:`catlog.Autoregressive` requires.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

import catlog

# (x: LongTensor[M, *B, D], d) -> LongTensor[M, *B, d + 1]: the input tokens u_0 .. u_d of position d,
# a function of x[..., :d] only.
Inputs = Callable[[torch.Tensor, int], torch.Tensor]


def previous_choices(start_token: int) -> Inputs:
    """The inputs ``(start_token, x_0, ..., x_{d-1})`` of position ``d``."""

    def inputs(x: torch.Tensor, d: int) -> torch.Tensor:
        start = torch.full((*x.shape[:-1], 1), start_token, dtype=torch.long, device=x.device)
        return torch.cat([start, x[..., :d]], -1)

    return inputs


class SequencePolicy(torch.nn.Module):
    """The GRU policy of the module docstring.

    Args:
        num_inputs: the input tokens' vocabulary (``K + 1`` for :func:`previous_choices`
            with start token ``K``; the number of states for closed loop).
        num_categories: ``K``, the choices at each position.
        context_features: ``C``, the length of the context vector ``c``.
        hidden: the GRU's width (also that of the input embedding).
    """

    def __init__(self, num_inputs: int, num_categories: int, context_features: int, hidden: int = 64) -> None:
        super().__init__()
        self.embedding = torch.nn.Embedding(num_inputs, hidden)
        self.context = torch.nn.Linear(context_features, hidden)
        self.gru = torch.nn.GRU(hidden, hidden, batch_first=True)
        self.head = torch.nn.Linear(hidden, num_categories)

    def forward(self, tokens: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """The logits ``[M, *B, K]`` after reading ``tokens: LongTensor[M, *B, T]`` from ``context: [*B, C]``."""
        rows = tokens.shape[:-1]
        initial = torch.tanh(self.context(context)).expand(*rows, -1).reshape(1, -1, self.gru.hidden_size)
        outputs, _ = self.gru(self.embedding(tokens.reshape(-1, tokens.shape[-1])), initial.contiguous())
        logits: torch.Tensor = self.head(outputs[:, -1])
        return logits.reshape(*rows, -1)

    def distribution(self, context: torch.Tensor, num_variables: int, inputs: Inputs) -> catlog.Autoregressive:
        """``p(x | c) = prod_d p(x_d | x_<d, c)`` for the contexts ``[*B, C]``: batch shape ``B``, ``D`` variables."""

        def conditional(x: torch.Tensor, d: int) -> torch.Tensor:
            return self.forward(inputs(x, d), context)

        return catlog.Autoregressive(
            conditional,
            num_variables,
            self.head.out_features,
            context.shape[:-1],
            device=context.device,
            dtype=context.dtype,
        )
