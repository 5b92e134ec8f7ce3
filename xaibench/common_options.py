"""The options that ``run``, ``sanity``, ``explain`` and ``video`` share, checked as the library receives them.

Models, methods (names with options, or ``all``), seed, batch size, image size, device, weights file
and target layer are checked here before anything heavy is loaded, each with a one-line
:class:`~xaibench.errors.XaibenchError` that names the option as the command line spells it (the
field ``batch_size`` of a spec is ``--batch-size``), so the Python API and the command line say
the same thing.

    >>> model_names("efficientnet_lite0, efficientnet_lite1")
    ['efficientnet_lite0', 'efficientnet_lite1']
    >>> [spec.name for spec in check_methods("cam,center(sigma=0.5)")]
    ['cam', 'center']
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import torch

from xaibench import explainer, models, own_model
from xaibench.errors import XaibenchError, os_reason
from xaibench.method_spec import MethodSpec, check_options, method_options, parse_methods, repeated
from xaibench.seeding import MAX_SEED

logger = logging.getLogger(__name__)

#: The methods a run compares when it is not told.
DEFAULT_METHODS = "cam,gradcam,saliency"
#: Sides the images may be resized to: smaller leaves no room for a feature map, larger no memory.
IMAGE_SIZE_RANGE = (16, 4096)
#: The model for your own photos and videos (``explain``, ``video``): a real ImageNet classifier that
#: needs no download.
DEFAULT_PHOTO_MODEL = "efficientnet_lite0"
#: Where a run or a sanity check without ``out`` makes its folder (:func:`default_name`).
REPORTS = "reports"
#: ``weights`` that name no file: the model's trained weights, or random ones.
WEIGHTS_WORDS = ("default", "none")

#: Methods given as one text (``"cam,scorecam(batch_size=64)"``) or a list of names, texts or specs.
Methods = str | Sequence[str | MethodSpec]


class CommonOptions(Protocol):
    """What :func:`check_common` reads from a spec (or parsed arguments)."""

    models: str | Sequence[str]
    n: int | None
    seed: int
    batch_size: int
    image_size: int | None
    device: str
    weights: str
    target_layer: str | None
    mean: str | Sequence[float] | None
    std: str | Sequence[float] | None
    class_names: str | None


def model_names(models: str | Sequence[str]) -> list[str]:
    """The model names of ``--model`` (comma-separated, or a list), each once.

    Raises:
        XaibenchError: a model named twice.
    """
    parts = models.split(",") if isinstance(models, str) else list(models)
    names = [m.strip() for m in parts if m.strip()]
    twice = repeated(names)
    if twice:
        raise XaibenchError(f"--model names {', '.join(twice)} more than once; name each model once")
    return names


def parse_specs(methods: Methods) -> list[MethodSpec]:
    """Methods (or metrics) as one text or a list of names, texts with options, or :class:`MethodSpec` s."""
    if isinstance(methods, str):
        return parse_methods(methods)
    specs: list[MethodSpec] = []
    for item in methods:
        specs += [item] if isinstance(item, MethodSpec) else parse_methods(item)
    return specs


def check_methods(methods: Methods) -> list[MethodSpec]:
    """``--methods``, parsed, ``all`` expanded (:func:`every_method`), each name and option checked.

    Raises:
        XaibenchError: no method, one named twice, an unknown name or option.
    """
    specs = parse_specs(methods)
    if not specs:
        raise XaibenchError(f"--methods names no method; name at least one, e.g. --methods {DEFAULT_METHODS}")
    if names_all(specs):
        specs = every_method(specs[0].options)
    twice = repeated([s.name for s in specs])
    if twice:
        raise XaibenchError(f"--methods names {', '.join(twice)} more than once; name each method once")
    for spec in specs:  # a typo or a wrong option fails here, before anything heavy is loaded
        check_options(spec.name, explainer.get_explainer(spec.name), spec.options)
    return specs


def names_all(specs: Sequence[MethodSpec]) -> bool:
    """Whether the methods are ``all``: every installed method."""
    return [s.name for s in specs] == ["all"]


def every_method(options: dict) -> list[MethodSpec]:
    """``--methods all``: every installed method that can be loaded (the others are logged)."""
    if options:
        raise XaibenchError("--methods all takes no options; name the methods to give them options")
    specs = []
    for name in explainer.available_explainers():
        try:
            explainer.get_explainer(name)
        except XaibenchError as error:
            logger.warning("--methods all: left out %s (%s)", name, error)
            continue
        specs.append(MethodSpec(name))
    return specs


def check_seed(seed: int) -> None:
    """``--seed``: 32 bits, ``0 <= seed <= 2**32 - 1``."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise XaibenchError(f"--seed must lie in [0, 2**32 - 1], got {seed}")


def check_device(name: str) -> None:
    """``--device``: a torch device that this machine has and can compute on."""
    try:
        device = torch.device(name)
    except RuntimeError:
        raise XaibenchError(f"--device '{name}' is not a torch device; use cpu, cuda, cuda:1, mps, ...") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise XaibenchError(f"--device {name}: this machine has no CUDA GPU that torch can use; use --device cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise XaibenchError(f"--device {name}: there are only {torch.cuda.device_count()} CUDA devices")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise XaibenchError(f"--device {name}: MPS is not available on this machine; use --device cpu")
    if device.type == "meta":
        raise XaibenchError("--device meta holds no data; use cpu, cuda or mps")
    try:
        torch.zeros(1, device=device) + 1
    except Exception as error:
        cause = " ".join(str(error).split())[:200]
        raise XaibenchError(f"--device {name} cannot be used on this machine ({cause}); use --device cpu") from None


def check_weights_file(weights: Path) -> None:
    """``--weights PATH``: a regular file that can be opened for reading (the OS's reason if not)."""
    if weights.is_dir():
        raise XaibenchError(
            f"--weights {weights} is a folder; pass the state-dict file in it (one saved with "
            "torch.save(model.state_dict(), PATH)), 'default' or 'none'"
        )
    if not weights.exists():
        raise XaibenchError(f"--weights {weights}: no such file; pass a state-dict file, 'default' or 'none'")
    if not weights.is_file():
        raise XaibenchError(f"--weights {weights} is not a regular file; pass a state-dict file, 'default' or 'none'")
    try:
        os.close(os.open(weights, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)))
    except OSError as error:
        raise XaibenchError(f"--weights {weights}: the file cannot be read ({os_reason(error)})") from None


def check_common(options: CommonOptions) -> None:
    """The options the commands share: model, images, seed, batch, image size, device, weights, layer.

    Raises:
        XaibenchError: the first option that is wrong, named as the command line spells it.
    """
    if not model_names(options.models):
        raise XaibenchError("--model names no model; e.g. --model efficientnet_lite0")
    for option, value in (("--n", options.n), ("--batch-size", options.batch_size), ("--image-size", options.image_size)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise XaibenchError(f"{option} must be a whole number, got {value!r}")
    if options.n is not None and options.n < 1:
        raise XaibenchError(f"--n must be at least 1, got {options.n}")
    check_seed(options.seed)
    if options.batch_size < 1:
        raise XaibenchError(f"--batch-size must be at least 1, got {options.batch_size}")
    low, high = IMAGE_SIZE_RANGE
    if options.image_size is not None and not low <= options.image_size <= high:
        raise XaibenchError(f"--image-size must lie in [{low}, {high}] pixels, got {options.image_size}")
    check_device(options.device)
    if options.weights not in WEIGHTS_WORDS:
        check_weights_file(Path(options.weights))
        if len(model_names(options.models)) > 1:
            raise XaibenchError("--weights PATH needs a single --model; several models use their own weights")
    if options.target_layer is not None and not options.target_layer.strip():
        raise XaibenchError("--target-layer is empty; name a layer (e.g. layer4) or leave the option out")
    own = [option for option, value in (("--mean", options.mean), ("--std", options.std),
                                        ("--class-names", options.class_names)) if value is not None]
    named = [m for m in model_names(options.models) if not own_model.parse_spec(m)]
    if own and named:
        raise XaibenchError(f"{own[0]} is for a network of your own (--model FILE.py:FACTORY); {named[0]} brings its "
                            "own normalisation and class names: leave the option out")
    own_model.normalisation(options.mean, "--mean")
    own_model.normalisation(options.std, "--std")
    if (options.mean is None) != (options.std is None):
        raise XaibenchError("give --mean and --std together (or neither: the network then takes images in [0, 1])")


def one_model(options: CommonOptions, command: str) -> str:
    """The one model of a command that takes one (``sanity``, ``explain``, ``video``).

    Raises:
        XaibenchError: several models (the message names ``command``'s rule).
    """
    names = model_names(options.models)
    if len(names) != 1:
        rule = "checks one model at a time" if command == "sanity" else "uses one model"
        raise XaibenchError(f"xaibench {command} {rule}; pass a single --model")
    return names[0]


def load(name: str, options: CommonOptions) -> models.Model:
    """Model ``name`` with the options' weights (``none``: random; for a network of your own: as its
    factory builds it), target layer and device; a network of your own also with the options' image
    size (as its input size), normalisation and class names."""
    weights = None if options.weights == "none" else options.weights
    own = {}
    if own_model.parse_spec(name):
        own = dict(input_size=getattr(options, "image_size", None), mean=options.mean, std=options.std,
                   class_names=options.class_names)
    return models.load_model(name, weights=weights, target_layer=options.target_layer, device=options.device, **own)


def with_seed(spec: MethodSpec, seed: int, lookup: Callable[[str], type] = explainer.get_explainer) -> MethodSpec:
    """The run's seed for a method (or, with ``lookup=metric.get_metric``, a metric) that takes one and
    was not given one."""
    options = method_options(lookup(spec.name)) or {}
    if "seed" in options and "seed" not in spec.options:
        return MethodSpec(spec.name, {**spec.options, "seed": seed})
    return spec


def create(spec: MethodSpec, model: models.Model, seed: int) -> explainer.Explainer:
    """The explainer of ``spec`` for ``model``, with the run's seed where the method takes one."""
    spec = with_seed(spec, seed)
    return explainer.create_explainer(spec.name, model, **spec.options)


def fewer_images_note(requested: int | None, available: int, what: str) -> str | None:
    """The note for ``--n`` asking for more images than the data set holds (None when it does not)."""
    if requested is None or requested <= available:
        return None
    images, those = ("1 image", "that one") if available == 1 else (f"{available} images", f"those {available}")
    return f"--n {requested}: the data set has only {images}; {what} {those}"


def image_size(options: CommonOptions, model: models.Model) -> tuple[int, int]:
    """The side images are resized to (``--image-size``, else the model's), checked to leave the target
    layer a spatial map."""
    size = (options.image_size, options.image_size) if options.image_size else tuple(model.input_size)
    if size != tuple(model.input_size):
        models.check_target_layer(model.network, model.target_layer_name, torch.zeros(1, 3, *size, device=model.device))
    return size


def default_name(models: str | Sequence[str], dataset: str) -> str:
    """The name of a folder made for a run without ``out``: ``<time>-<model>-<data set kind>``."""
    text = models if isinstance(models, str) else ",".join(models)
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{text}-{dataset.split(':')[0]}"
