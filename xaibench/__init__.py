"""xaibench: how well do explanation methods localize the object a classifier recognised?

The data flow is one-way: data set -> model -> explainer -> metrics -> DataFrame -> report.
Methods (:class:`Explainer`) and metrics (:class:`Metric`) are plugins found by name.

    >>> import xaibench
    >>> model = xaibench.load_model("efficientnet_lite0")
    >>> cam = xaibench.create_explainer("cam", model)
    >>> maps = cam(images, targets)          # (N, H, W) in [0, 1]

A whole benchmark run, as ``xaibench run`` does it (:mod:`xaibench.runner`):

    >>> result = xaibench.run(xaibench.RunSpec(methods="cam,gradcam", n=16, out="reports/quick"))
"""

__version__ = "0.4.0"

from xaibench.errors import XaibenchError
from xaibench.explainer import (
    Explainer,
    Explanation,
    available_explainers,
    create_explainer,
    get_explainer,
    register_explainer,
)
from xaibench.metric import Metric, available_metrics, create_metric, register_metric
from xaibench.models import Model, load_model, wrap_model
from xaibench.data import load_dataset
from xaibench.harness import evaluate
from xaibench.report import summarize
from xaibench.data.selection import Selection
from xaibench.runner import RunResult, RunSpec, run

__all__ = [
    "Explainer",
    "Explanation",
    "Metric",
    "Model",
    "RunResult",
    "RunSpec",
    "Selection",
    "XaibenchError",
    "available_explainers",
    "available_metrics",
    "create_explainer",
    "create_metric",
    "evaluate",
    "get_explainer",
    "load_dataset",
    "load_model",
    "register_explainer",
    "register_metric",
    "run",
    "summarize",
    "wrap_model",
]
