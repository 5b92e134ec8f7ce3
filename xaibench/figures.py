"""One photo explained, in the style of the CAM paper's Figure 4 (Zhou et al., CVPR 2016): the image,
then the class activation maps of its top-k predicted classes, each titled with the class's name
and probability; with several methods, one row per method, the same classes in every row.

This is what ``xaibench explain`` draws. Everything here takes a single image of the user's own:

- :func:`load_photo` reads any image file PIL can decode (JPEG, PNG, WebP, ...; 8-bit RGB,
  grayscale, palette, with alpha, 16-bit grayscale) and turns it upright (EXIF orientation);
- :func:`top_classes` ranks the classes by softmax probability;
- :func:`resolve_class` finds a class by its name (case-insensitive) or index;
- :func:`explain_figure` draws the figure (a :class:`matplotlib.figure.Figure`, no pyplot state);
- :func:`save_figure` writes it atomically, in the format its suffix names.

EXIF orientation *is* applied here, unlike in the benchmark's data loaders
(:mod:`xaibench.data.transforms`), which keep the stored pixel frame because the ground-truth boxes
of ILSVRC, Pascal VOC and COCO are given in it. A photo explained on its own has no boxes, so it is
shown and explained upright, the way every image viewer shows it.

Apart from that, an image is prepared as the benchmark prepares its images: 16-bit (and 32-bit
integer or float) grayscale is read by its own range (``transforms._gray_in_unit_range``, the
benchmark's rule), every other mode becomes 8-bit RGB, and the image is resized to the model's
``input_size`` with PIL bilinear and no crop, so the aspect ratio is not kept. One difference: an
image with transparency (``RGBA``, ``LA``, ``PA``, or a palette or grayscale image with a
transparent colour) is composited onto white, as a viewer shows it, where the benchmark drops the
alpha channel (whatever colour transparent pixels hold then shows).
"""

from __future__ import annotations

import difflib
import io
import logging
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps
from torch import Tensor

from xaibench.data.transforms import _gray_in_unit_range, open_image
from xaibench.errors import DatasetError, UnknownNameError, UnreadableImageError, XaibenchError
from xaibench.explainer import Explainer, Explanation, create_explainer
from xaibench.method_spec import MethodSpec, parse_methods
from xaibench.models import Model, eval_mode
from xaibench.run_folder import atomic_write
from xaibench.text import literal
from xaibench.viz import DEFAULT_ALPHA, DEFAULT_CMAP, check_style

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "FORMATS",
    "PANEL_INCHES",
    "check_image_file",
    "check_topk",
    "class_title",
    "explain_figure",
    "figure_file_name",
    "load_photo",
    "resolve_class",
    "save_figure",
    "figure_bytes",
    "top_classes",
]

logger = logging.getLogger(__name__)

#: The side of one panel (the image, or one class's map), in inches, when no ``figsize`` is given.
PANEL_INCHES = 2.4
#: The formats :func:`save_figure` writes, by file suffix.
FORMATS = {"png": "png", "pdf": "pdf", "svg": "svg", "jpg": "jpg", "jpeg": "jpg"}
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
_TITLE_POINTS = 9.0  # a title's font size, made smaller for titles too long for their panel


# ------------------------------------------------------------------------------------------ images


#: What the messages about an unreadable image file that the user named tell them to do.
FILE_REMEDY = "name another image file"


def load_photo(source: str | os.PathLike | Image.Image, size: int | tuple[int, int]) -> tuple[Tensor, Image.Image]:
    """Read an image, turn it upright and resize it for a network.

    Args:
        source: An image file, or a PIL image (an opened file's EXIF orientation is applied too).
        size: (H, W), or one side of a square, to resize to (PIL bilinear, no crop: the aspect
            ratio is not kept, as in the benchmark).

    Returns:
        ``(image, upright)``: the (3, H, W) float32 RGB tensor in [0, 1], and the upright image at
        its own size as an 8-bit RGB PIL image (for showing it).

    Raises:
        UnreadableImageError: the file is missing, not a regular file, not an image, corrupt,
            truncated or too large (:func:`xaibench.data.transforms.open_image`), or its pixels
            cannot be converted to RGB (an unknown mode; 32-bit or float pixels outside the range
            they are read in).
    """
    height, width = (size, size) if isinstance(size, int) else size
    if isinstance(source, Image.Image):
        return _prepare(source, (height, width), "the image")
    path = Path(source)
    with open_image(path, remedy=FILE_REMEDY) as img:
        return _prepare(img, (height, width), str(path))


def check_image_file(path: str | os.PathLike) -> None:
    """Raise :class:`UnreadableImageError` if ``path`` is missing or not a regular file; cheap (nothing
    is decoded), so that a command can refuse such paths before it loads a model."""
    if not os.path.isfile(path):
        with open_image(path, remedy=FILE_REMEDY):  # raises, with the message load_photo gives
            pass


def _prepare(img: Image.Image, size: tuple[int, int], source: str) -> tuple[Tensor, Image.Image]:
    """The one place where an image becomes the network's input: upright, RGB in [0, 1], resized."""
    height, width = size
    img = _upright(img, source)
    try:
        gray = _gray_in_unit_range(img, Path(source))
        if gray is None:
            rgb = _flatten_alpha(img)
    except (DatasetError, ValueError, OSError) as err:
        raise UnreadableImageError(
            f"{source}: its pixels (mode {img.mode}) cannot be converted to RGB ({' '.join(str(err).split())}); "
            "save it as an 8-bit RGB or grayscale image"
        ) from None
    if gray is not None:
        upright = Image.fromarray(np.round(np.clip(gray, 0, 1) * 255).astype(np.uint8)).convert("RGB")
        plane = Image.fromarray(gray.astype(np.float32)).resize((width, height), Image.BILINEAR)
        channel = np.clip(np.asarray(plane, dtype=np.float32), 0.0, 1.0)
        tensor = torch.from_numpy(np.ascontiguousarray(np.broadcast_to(channel, (3, height, width))))
        return tensor, upright
    resized = rgb.resize((width, height), Image.BILINEAR)
    array = np.asarray(resized, dtype=np.float32) / np.float32(255.0)
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1))), rgb


def _upright(img: Image.Image, source: str) -> Image.Image:
    """The image as a viewer shows it: its EXIF orientation applied (unchanged without one)."""
    try:
        return ImageOps.exif_transpose(img)
    except (OSError, ValueError, SyntaxError, TypeError, KeyError) as err:  # a corrupt EXIF block
        logger.warning("%s: its EXIF block cannot be parsed (%s); shown as stored", source, err)
        return img


def _flatten_alpha(img: Image.Image) -> Image.Image:
    """8-bit RGB; an image with transparency composited onto white."""
    if img.mode in _ALPHA_MODES or "transparency" in img.info:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")


def _as_input(image: str | os.PathLike | Image.Image | Tensor, model: Model) -> tuple[Tensor, str]:
    """``image`` as the model's (3, H, W) input and a title for it (the file's name, or "input")."""
    tensor, title, _ = _as_input_sized(image, model)
    return tensor, title


def _as_input_sized(image: str | os.PathLike | Image.Image | Tensor, model: Model) -> tuple[Tensor, str, tuple[int, int]]:
    """:func:`_as_input`, and the (height, width) of the image as given, before it was resized."""
    if isinstance(image, Tensor):
        if image.dim() == 4 and image.shape[0] == 1:
            image = image[0]
        if image.dim() != 3 or image.shape[0] != 3 or not image.is_floating_point():
            raise XaibenchError(
                f"image must be a floating-point (3, H, W) RGB tensor in [0, 1], got {tuple(image.shape)} {image.dtype}"
            )
        if tuple(image.shape[-2:]) != tuple(model.input_size):
            size = tuple(image.shape[-2:])
            image = F.interpolate(
                image[None].float(), size=tuple(model.input_size), mode="bilinear", align_corners=False, antialias=True
            )[0]
            return image.detach().float().cpu(), "input", size
        return image.detach().float().cpu(), "input", tuple(image.shape[-2:])
    tensor, photo = load_photo(image, tuple(model.input_size))
    return tensor, Path(image).name if isinstance(image, (str, os.PathLike)) else "input", (photo.height, photo.width)


# ----------------------------------------------------------------------------------------- classes


def _probabilities(model: Model, image: Tensor) -> Tensor:
    """Softmax of the model's logits for one (3, H, W) image: (n_classes,) on the CPU."""
    with eval_mode(model.network), torch.no_grad():
        logits = model(image[None].to(model.device))
    return logits.float().softmax(-1)[0].cpu()


def check_topk(model: Model, k: int) -> None:
    """Raise :class:`XaibenchError` unless 1 <= ``k`` <= the model's number of classes."""
    if not 1 <= k <= model.num_classes:
        raise XaibenchError(f"--topk must lie in [1, {model.num_classes}] (the classes of model '{model.name}'), got {k}")


def top_classes(
    model: Model, image: str | os.PathLike | Image.Image | Tensor, k: int = 5
) -> list[tuple[int, str, float]]:
    """The ``k`` most probable classes of ``image``: ``(index, name, probability)``, most probable
    first; probabilities are the softmax of the logits.

    Args:
        model: The classifier.
        image: A (3, H, W) tensor in [0, 1] (resized to ``model.input_size`` if it is not that size),
            an image file or a PIL image (read with :func:`load_photo`).
        k: How many, 1 to the number of classes.

    Raises:
        XaibenchError: ``k`` out of range; an image that cannot be read.
    """
    check_topk(model, k)
    tensor, _ = _as_input(image, model)
    values, indices = _probabilities(model, tensor).topk(k)
    return [(int(i), model.class_names[int(i)], float(p)) for p, i in zip(values, indices)]


def resolve_class(model: Model, name: str | int) -> int:
    """The index of a class of ``model``: its name, matched case-insensitively (surrounding spaces
    ignored), or its index as a number.

    Raises:
        UnknownNameError: no class has that name (the message suggests a close one and says how to
            list them), or the index is out of range.
        XaibenchError: several classes have that name (the message gives their indices).
    """
    text = str(name).strip()
    matches = [k for k, n in enumerate(model.class_names) if n.strip().casefold() == text.casefold()]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise XaibenchError(
            f"model '{model.name}' has {len(matches)} classes named '{text}' (indices "
            f"{', '.join(map(str, matches))}); pass the index instead, e.g. --class {matches[0]}"
        )
    listing = f"list them with: xaibench explain --model {model.name} --list-classes"
    if text.isdigit():
        if int(text) < model.num_classes:
            return int(text)
        raise UnknownNameError(
            f"class index {text} is out of range: model '{model.name}' has {model.num_classes} classes, "
            f"0 to {model.num_classes - 1}; {listing}"
        )
    folded = {n.strip().casefold(): n for n in model.class_names}
    close = difflib.get_close_matches(text.casefold(), list(folded), n=3)
    hint = "did you mean " + " or ".join(f"'{folded[c]}'" for c in close) + "? " if close else "no class name is close; "
    raise UnknownNameError(f"model '{model.name}' has no class '{text}'; {hint}{listing}")


def class_title(name: str, probability: float) -> str:
    """A map's title: the class name and its probability in percent, ``"tabby (62.1%)"``."""
    return f"{name} ({100 * probability:.1f}%)"


# ----------------------------------------------------------------------------------------- figures


def _explainers(methods: str | Sequence[str | MethodSpec | Explainer], model: Model) -> list[Explainer]:
    if isinstance(methods, (str, MethodSpec, Explainer)):
        methods = [methods]
    built: list[Explainer] = []
    for method in methods:
        if isinstance(method, Explainer):
            built.append(method)
            continue
        specs = parse_methods(method) if isinstance(method, str) else [method]
        built += [create_explainer(spec.name, model, **spec.options) for spec in specs]
    if not built:
        raise XaibenchError("no method to explain with; name at least one, e.g. methods='cam'")
    return built


def explain_figure(
    image: str | os.PathLike | Image.Image | Tensor,
    model: Model,
    methods: str | Sequence[str | MethodSpec | Explainer] = "cam",
    *,
    topk: int = 5,
    class_name: str | int | None = None,
    cmap: str = DEFAULT_CMAP,
    alpha: float = DEFAULT_ALPHA,
    figsize: tuple[float, float] | None = None,
    title: str | None = None,
) -> Figure:
    """The CAM paper's Figure 4 for one image: the image, then the maps of its ``topk`` most probable
    classes (or of ``class_name`` alone), one row per method.

    Each map is the method's map for that class (:meth:`Explainer.explain` on the image repeated
    once per class, one call per method), at the model's input size, min-max scaled to [0, 1],
    drawn over the image with ``cmap`` and opacity ``alpha``; one colour bar serves every map. A
    map the method could not give (NaN or infinite values) or that is constant is drawn blank and
    says so.

    Layout, for tests and for editing the figure: ``fig.axes`` holds the panels row by row, ``1 +
    k`` per row (k classes), then the colour bar. A row's first panel shows the image in the first
    row (titled ``title``) and is hidden in the others; its other panels are titled
    :func:`class_title` (class name and probability), and the first of them has the method's name as
    its y label. Each panel's label (``ax.get_label()``) is ``"image"``, or ``"METHOD:INDEX"`` for a
    map; a map panel's second image (``ax.images[1].get_array()``) is the map itself. Every text is
    drawn as written (:func:`xaibench.text.literal`: a ``$`` in a file or class name is no mathtext).

    Args:
        image: An image file, a PIL image (both read with :func:`load_photo`: upright, resized to
            ``model.input_size``), or a (3, H, W) float tensor in [0, 1] (resized bilinearly if not
            that size).
        model: The classifier.
        methods: Method names with options (``"cam,scorecam(batch_size=64)"``), :class:`MethodSpec` s,
            or :class:`Explainer` s (e.g. built with a seed), or a list of them.
        topk: How many of the most probable classes to explain (ignored with ``class_name``).
        class_name: Explain this class only: a name of ``model.class_names`` (case-insensitive) or an
            index (:func:`resolve_class`).
        cmap, alpha: The maps' colour map and opacity.
        figsize: (width, height) in inches; default :data:`PANEL_INCHES` per panel.
        title: The image panel's title; default the file's name, or "input".

    Raises:
        XaibenchError: an unreadable image, unknown method or class, ``topk`` out of range, a bad
            colour map or opacity, or a method's error.
    """
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    check_style(cmap, alpha)
    if class_name is None:
        check_topk(model, topk)
    else:
        index = resolve_class(model, class_name)
    if figsize is not None and not (len(figsize) == 2 and all(np.isfinite(v) and v > 0 for v in figsize)):
        raise XaibenchError(f"figsize must be two positive numbers of inches (width, height), got {figsize}")
    explainers = _explainers(methods, model)
    tensor, default_title, (height, width) = _as_input_sized(image, model)
    # the model saw the photo resized to its input; drawn at the photo's own aspect ratio (a pixel of
    # the input is drawn `aspect` times as tall as it is wide)
    aspect = (height / width) * (tensor.shape[-1] / tensor.shape[-2])
    probabilities = _probabilities(model, tensor)
    if class_name is None:
        values, indices = probabilities.topk(topk)
        classes = [(int(i), float(p)) for p, i in zip(values, indices)]
    else:
        classes = [(index, float(probabilities[index]))]
    targets = torch.tensor([c for c, _ in classes], dtype=torch.long, device=model.device)
    batch = tensor[None].expand(len(classes), -1, -1, -1).contiguous().to(model.device)
    explanations: list[Explanation] = [e.explain(batch, targets) for e in explainers]

    shown = tensor.permute(1, 2, 0).clamp(0, 1).numpy()
    rows, columns = len(explainers), 1 + len(classes)
    if figsize is None:
        figsize = (PANEL_INCHES * columns + 0.9, PANEL_INCHES * rows + 0.5)
    titles = [class_title(model.class_names[c], p) for c, p in classes]
    title_points = _title_points(titles, figsize, columns)  # one size for every map's title
    fig = Figure(figsize=tuple(figsize), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False)
    for row, (method, explanation) in enumerate(zip(explainers, explanations)):
        first = axes[row, 0]
        first.set_label("image")
        if row == 0:
            first.imshow(shown, aspect=aspect)
            shown_title = title if title is not None else default_title
            first.set_title(literal(shown_title), fontsize=_title_points([shown_title], figsize, columns))
        else:
            first.set_visible(False)
        maps = explanation.maps.detach().float().cpu().numpy()
        for col, (class_index, probability) in enumerate(classes, start=1):
            ax = axes[row, col]
            ax.set_label(f"{method.name}:{class_index}")
            ax.imshow(shown, aspect=aspect)
            ax.imshow(maps[col - 1], cmap=cmap, alpha=alpha, vmin=0.0, vmax=1.0, aspect=aspect)
            ax.set_title(literal(titles[col - 1]), fontsize=title_points)
            if col == 1:
                ax.set_ylabel(literal(method.name), fontsize=10, fontweight="bold")
            if not bool(explanation.finite[col - 1]):
                _note(ax, "no map:\nNaN or inf values")
            elif bool(explanation.constant[col - 1]):
                _note(ax, "constant map:\nno region singled out")
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(
        ScalarMappable(norm=Normalize(0.0, 1.0), cmap=cmap), ax=axes[:, 1:].ravel().tolist(),
        shrink=0.9 if rows > 1 else 0.8, aspect=12 * rows, pad=0.02,
    ).set_label("map (min-max scaled)", fontsize=8)
    scope = f"class {model.class_names[classes[0][0]]}" if class_name is not None else f"top-{len(classes)} classes"
    fig.suptitle(literal(f"{model.name}: {scope}"), fontsize=10)
    return fig


def _title_points(texts: Sequence[str], figsize: Sequence[float], columns: int) -> float:
    """The title font size (at most 9 points) at which the longest of ``texts`` fits the width of a panel."""
    # the figure's width less the colour bar and the row label (about 1.1 inches), shared by the panels
    panel_points = 0.9 * 72.0 * (float(figsize[0]) - 1.1) / columns
    needed = 0.62 * max(len(text) for text in texts)  # a character is about 0.55 (lower case) to 0.7 (capitals, digits) em wide
    return max(5.0, min(_TITLE_POINTS, panel_points / max(needed, 1.0)))


def _note(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", fontsize=8,
            bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none"})


def figure_file_name(image: str | os.PathLike, methods: Sequence[str], fmt: str = "png", class_name: str | None = None) -> str:
    """``<image stem>-<method>[+<method>...][-<class>].<fmt>``, the name ``xaibench explain`` gives a
    figure; characters other than letters, digits, ``._+-`` in the class name become ``_``."""
    name = f"{Path(image).stem}-{'+'.join(methods)}"
    if class_name is not None:
        name += "-" + re.sub(r"[^\w.+-]+", "_", str(class_name).strip())
    return f"{name}.{fmt}"


#: The largest raster figure written, in pixels (about 400 MB while it is drawn), and the largest side
#: (the Agg renderer's limit is 2**16).
MAX_FIGURE_PIXELS = 100_000_000
MAX_FIGURE_SIDE = 2**16 - 1
#: The finest resolution asked of ``explain --dpi`` (print quality is 300 to 600).
MAX_DPI = 2400


def check_dpi(dpi: float) -> None:
    """Refuse a resolution outside (0, :data:`MAX_DPI`] dots per inch (NaN and inf included)."""
    if not (math.isfinite(dpi) and 0 < dpi <= MAX_DPI):
        raise XaibenchError(f"--dpi must be a number in (0, {MAX_DPI}], got {dpi:g}")


def check_raster_size(width_in: float, height_in: float, dpi: float) -> None:
    """Refuse a raster figure of ``width_in`` x ``height_in`` inches at ``dpi`` that cannot be drawn.

    Raises:
        XaibenchError: ``dpi`` outside (0, :data:`MAX_DPI`] (:func:`check_dpi`), or the figure larger
            than :data:`MAX_FIGURE_SIDE` a side or :data:`MAX_FIGURE_PIXELS` in all.
    """
    check_dpi(dpi)
    width, height = width_in * dpi, height_in * dpi
    if max(width, height) > MAX_FIGURE_SIDE or width * height > MAX_FIGURE_PIXELS:
        raise XaibenchError(
            f"the figure would be {width:.0f} x {height:.0f} pixels ({width_in:g} x {height_in:g} inches at "
            f"{dpi:g} dpi), more than can be drawn ({MAX_FIGURE_PIXELS:,} pixels, {MAX_FIGURE_SIDE} a side); "
            "lower the dpi or the figure's size (--dpi, --figsize)"
        )


def save_figure(fig: Figure, path: str | os.PathLike, *, dpi: float = 100) -> Path:
    """Write ``fig`` atomically (:func:`xaibench.run_folder.atomic_write`) in the format its suffix
    names (:data:`FORMATS`: png, pdf, svg, jpg) at ``dpi`` dots per inch (see :func:`figure_bytes`).

    Raises:
        XaibenchError: an unknown suffix, ``dpi`` outside (0, :data:`MAX_DPI`], or a raster figure too
            large to draw (:func:`check_raster_size`).
    """
    path = Path(path)
    fmt = FORMATS.get(path.suffix.lower().lstrip("."))
    if fmt is None:
        raise XaibenchError(f"cannot save a figure as '{path.name}': name it .png, .pdf, .svg or .jpg")
    data = figure_bytes(fig, fmt, dpi=dpi)
    return atomic_write(path, lambda file: file.write(data))


def figure_bytes(fig: Figure, fmt: str, *, dpi: float = 100) -> bytes:
    """``fig`` as a file's bytes in the format ``fmt`` (a value of :data:`FORMATS`: png, pdf, svg, jpg)
    at ``dpi`` dots per inch. A PNG is written as RGB (the figure is opaque), with Pillow's
    ``optimize``: about 12% smaller than matplotlib's RGBA.

    Raises:
        XaibenchError: an unknown format, ``dpi`` outside (0, :data:`MAX_DPI`], or a raster figure too
            large to draw (:func:`check_raster_size`).
    """
    if fmt not in FORMATS.values():
        raise XaibenchError(f"cannot save a figure as {fmt}: choose png, pdf, svg or jpg")
    if fmt in ("png", "jpg"):
        check_raster_size(fig.get_figwidth(), fig.get_figheight(), dpi)
    else:
        check_dpi(dpi)
    buffer = io.BytesIO()
    if fmt != "png":
        fig.savefig(buffer, format=fmt, dpi=dpi)
        return buffer.getvalue()
    fig.savefig(buffer, format="png", dpi=dpi, facecolor="white")
    with Image.open(buffer) as rendered:
        rgb = rendered.convert("RGB")
    out = io.BytesIO()
    rgb.save(out, format="PNG", optimize=True)
    return out.getvalue()
