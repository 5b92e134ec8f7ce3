"""xaibench: how well do explanation methods localize the object a classifier recognised?

The data flow is one-way: data set -> model -> explainer -> metrics -> DataFrame -> report.

    >>> import xaibench
    >>> model = xaibench.load_model("efficientnet_lite0")
    >>> cam = xaibench.create_explainer("cam", model)
    >>> maps = cam(images, targets)          # (N, H, W) in [0, 1]
"""

from xaibench.errors import XaibenchError
from xaibench.explainer import (
    Explainer,
    Explanation,
    available_explainers,
    create_explainer,
    get_explainer,
    register_explainer,
)
from xaibench.models import Model, load_model, wrap_model
from xaibench.data import load_dataset
from xaibench.harness import evaluate
from xaibench.report import summarize

__version__ = "0.1.0"

__all__ = [
    "Explainer",
    "Explanation",
    "Model",
    "XaibenchError",
    "available_explainers",
    "create_explainer",
    "evaluate",
    "get_explainer",
    "load_dataset",
    "load_model",
    "register_explainer",
    "summarize",
    "wrap_model",
]
