"""catlog: unbiased, low-variance gradients through samples of categorical variables.

Every estimator has one shape, ``est(f, logits) -> Tensor[*B]``: see
:class:`catlog.Estimator`.
"""

from catlog.autoregressive import Autoregressive
from catlog.disarm import DisARM
from catlog.estimator import Cost, Estimator
from catlog.exact import Exact
from catlog.gumbel import GumbelSoftmax
from catlog.gumbel_rao import GumbelRao
from catlog.indecater import IndeCateR
from catlog.reinmax import ReinMax
from catlog.scater import SCateR
from catlog.score_function import GRPO, REINFORCE, RLOO

__all__ = [
    "Autoregressive",
    "Cost",
    "DisARM",
    "Estimator",
    "Exact",
    "GRPO",
    "GumbelRao",
    "GumbelSoftmax",
    "IndeCateR",
    "REINFORCE",
    "RLOO",
    "ReinMax",
    "SCateR",
]
__version__ = "0.1.0"
