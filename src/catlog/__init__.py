"""catlog: unbiased, low-variance gradients through samples of categorical variables.

Every estimator has one shape, ``est(f, logits) -> Tensor[*B]``: see
:class:`catlog.Estimator`.
"""

from catlog.autoregressive import Autoregressive
from catlog.estimator import Cost, Estimator
from catlog.exact import Exact
from catlog.gumbel import GumbelSoftmax
from catlog.indecater import IndeCateR
from catlog.scater import SCateR
from catlog.score_function import REINFORCE, RLOO

__all__ = [
    "Autoregressive",
    "Cost",
    "Estimator",
    "Exact",
    "GumbelSoftmax",
    "IndeCateR",
    "REINFORCE",
    "RLOO",
    "SCateR",
]
__version__ = "0.1.0"
