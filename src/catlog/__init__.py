"""catlog: unbiased, low-variance gradients through samples of categorical variables.

Every estimator has one shape, ``est(f, logits) -> Tensor[*B]``: see
:class:`catlog.Estimator`.
"""

from catlog._objective import Objective
from catlog._relaxed import Relaxed
from catlog.autoregressive import Autoregressive
from catlog.control_variates import Bilinear, ControlVariate, Correction, Fitted, Taylor
from catlog.disarm import DisARM
from catlog.estimator import Cost, Estimator
from catlog.exact import Exact
from catlog.gumbel import GumbelSoftmax
from catlog.gumbel_rao import GumbelRao
from catlog.indecater import IndeCateR
from catlog.measure import (
    Comparison,
    EstimatorRow,
    compare,
    exact_gradient,
    gradient_variance,
    interleaved_ms,
    largest_size,
    repeated_gradients,
    signal_to_noise,
    squared_bias,
    squared_bias_floor,
)
from catlog.reinmax import ReinMax
from catlog.relax import REBAR, RELAX
from catlog.scater import SCateR
from catlog.score_function import GRPO, REINFORCE, RLOO

__all__ = [
    "Autoregressive",
    "Bilinear",
    "Comparison",
    "ControlVariate",
    "Correction",
    "Cost",
    "DisARM",
    "Estimator",
    "EstimatorRow",
    "Exact",
    "Fitted",
    "GRPO",
    "GumbelRao",
    "GumbelSoftmax",
    "IndeCateR",
    "Objective",
    "REBAR",
    "REINFORCE",
    "RELAX",
    "RLOO",
    "ReinMax",
    "Relaxed",
    "SCateR",
    "Taylor",
    "compare",
    "gradient_variance",
    "squared_bias",
    "squared_bias_floor",
    "signal_to_noise",
    "repeated_gradients",
    "exact_gradient",
    "largest_size",
    "interleaved_ms",
]
__version__ = "0.1.0"
