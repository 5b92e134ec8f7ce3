"""Figures of your own photos as one library call: :class:`ExplainSpec` in, one figure per image out.

:func:`explain_images` does what ``xaibench explain`` does: per image, a figure in the style of the
CAM paper's Figure 4 (Zhou et al., "Learning Deep Features for Discriminative Localization", CVPR
2016): the image, then each method's map of the image's top-k classes (or of one class), titled with
the class name and its probability (:func:`xaibench.figures.explain_figure`). Images that cannot be
read are skipped and named; the figures go into a folder (only figures an earlier ``explain`` wrote
there are replaced) or, for one image, into the file named.

    >>> from xaibench.explain_run import ExplainSpec, explain_images
    >>> done = explain_images(ExplainSpec(images=("cat.jpg",), methods="cam,gradcam", out="figures"))
    >>> done.written
    [PosixPath('figures/cat-cam+gradcam.png')]
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from xaibench import figures, viz
from xaibench.common_options import (
    DEFAULT_PHOTO_MODEL, Methods, check_common, check_methods, create, load, one_model,
)
from xaibench.data.pixel_limit import check_pixel_limit, pixel_limit
from xaibench.errors import XaibenchError
from xaibench.method_spec import MethodSpec
from xaibench.output_folder import OutputFolder
from xaibench.run_folder import writable_folder

#: The formats ``xaibench explain --format`` writes.
FIGURE_FORMATS = ("png", "pdf", "svg", "jpg")
#: Image suffixes it does not write: ``explain --out cat.gif`` is refused, not taken for a folder.
OTHER_IMAGE_SUFFIXES = frozenset({"gif", "bmp", "tif", "tiff", "webp", "ico", "ppm", "pgm", "tga", "heic", "avif", "jp2", "eps"})
#: The classes explained per image when neither ``topk`` nor ``class_name`` is given.
DEFAULT_TOPK = 5
#: Figures are at most this many inches a side.
MAX_FIGSIZE = 1000


@dataclass(frozen=True)
class ExplainSpec:
    """Everything ``xaibench explain`` is told; each field is the option of its name.

    Attributes:
        images: Image files (JPEG, PNG, WebP, ...).
        models: One model (default: :data:`~xaibench.common_options.DEFAULT_PHOTO_MODEL`).
        methods: Method names with options, one row of the figure each.
        topk: Explain the ``k`` most probable classes (None: :data:`DEFAULT_TOPK`).
        class_name: Explain this class only: a name (any case) or an index; not with ``topk``.
        out: A folder for the figures, or for one image the file to write (its suffix the format).
        format: ``png``, ``pdf``, ``svg`` or ``jpg`` (None: ``out``'s suffix, else png).
        cmap: Matplotlib colour map of the maps.
        alpha: Opacity of the maps over the image, 0 to 1.
        figsize: (width, height) in inches (None: about 2.4 per panel).
        dpi: Dots per inch of png and jpg figures.
        weights: ``"default"``, ``"none"`` or a state-dict file.
        target_layer: Dotted name of the feature layer (None: found automatically).
        seed: Seed of the methods that draw random numbers.
        device: A torch device.
        max_image_pixels: Refuse image files of more pixels (None: Pillow's limit).
    """

    images: Sequence[str | os.PathLike] = ()
    models: str | Sequence[str] = DEFAULT_PHOTO_MODEL
    methods: Methods = "cam"
    topk: int | None = None
    class_name: str | None = None
    out: str | os.PathLike = "."
    format: str | None = None
    cmap: str = viz.DEFAULT_CMAP
    alpha: float = viz.DEFAULT_ALPHA
    figsize: tuple[float, float] | None = None
    dpi: float = 100
    weights: str = "default"
    target_layer: str | None = None
    #: A network of your own (``--model FILE.py:FACTORY``): its input normalisation (three numbers each,
    #: or a text such as ``"0.485,0.456,0.406"``) and a file of its class names, one per line.
    mean: str | Sequence[float] | None = None
    std: str | Sequence[float] | None = None
    class_names: str | None = None
    seed: int = 0
    device: str = "cpu"
    max_image_pixels: int | None = None

    # What check_common reads of the options this command does not have.
    n = None
    batch_size = 1
    image_size = None

    def __post_init__(self) -> None:
        if not isinstance(self.images, tuple):
            object.__setattr__(self, "images", (self.images,) if isinstance(self.images, (str, os.PathLike)) else tuple(self.images))


@dataclass(frozen=True)
class ExplainResult:
    """The figures written, and a one-line reason for each image skipped (it could not be read)."""

    written: list[Path] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def model_classes(spec: ExplainSpec) -> list[str]:
    """The class names of ``spec``'s model (``xaibench explain --list-classes``), index by index."""
    check_pixel_limit(spec.max_image_pixels)
    check_common(spec)
    return list(load(one_model(spec, "explain"), spec).class_names)


def check_figsize(figsize: tuple[float, float] | None) -> None:
    """``--figsize``: two positive numbers of inches below :data:`MAX_FIGSIZE`, or None."""
    if figsize is None:
        return
    width, height = figsize
    if not (0 < width < MAX_FIGSIZE and 0 < height < MAX_FIGSIZE):
        raise XaibenchError(f"--figsize must be two positive numbers of inches below {MAX_FIGSIZE}, got '{width:g},{height:g}'")


def explain_output(spec: ExplainSpec) -> tuple[Path, Path | None, str]:
    """``out`` and ``format``: (the folder, the one file to write or None, the format).

    Raises:
        XaibenchError: a file suffix and a format that disagree, one file for several images, a file
            where a folder is meant, or a suffix of a format that is not written.
    """
    out = Path(spec.out)
    suffix = out.suffix.lower().lstrip(".")
    if suffix in figures.FORMATS and not out.is_dir():
        if spec.format is not None and spec.format != figures.FORMATS[suffix]:
            raise XaibenchError(f"--out {out} names a .{suffix} file but --format is {spec.format}; give one of them")
        if len(spec.images) != 1:
            raise XaibenchError(f"--out {out} names one file but {len(spec.images)} images are given; pass a folder")
        return out.parent, out, figures.FORMATS[suffix]
    if spec.format is not None and spec.format not in FIGURE_FORMATS:
        raise XaibenchError(f"--format must be one of {', '.join(FIGURE_FORMATS)}, got {spec.format!r}")
    written = ", ".join(f".{f}" for f in FIGURE_FORMATS[:-1]) + f" or .{FIGURE_FORMATS[-1]}"
    if out.exists() and not out.is_dir():
        raise XaibenchError(f"--out {out} is a file, not a folder; name a folder, or a {written} file")
    if not out.exists() and suffix in OTHER_IMAGE_SUFFIXES:  # e.g. cat.gif: a file meant, not a folder
        raise XaibenchError(f"--out {out}: figures are not written as .{suffix}; name a {written} file, or a folder")
    return out, None, spec.format or "png"


def explain_images(
    spec: ExplainSpec,
    *,
    on_figure: Callable[[Path], None] | None = None,
    on_skip: Callable[[str], None] | None = None,
) -> ExplainResult:
    """One figure per image of ``spec``, as ``xaibench explain`` writes them.

    Args:
        spec: What to explain.
        on_figure: Called with each figure's path as soon as it is written.
        on_skip: Called with the one-line reason of each image skipped (it could not be read).

    Raises:
        XaibenchError: a field is wrong (before the model is loaded), a figure of a name to write is
            there that ``explain`` did not write, or no image could be read (for one image: why).
    """
    with pixel_limit(spec.max_image_pixels):
        check_common(spec)
        one_model(spec, "explain")
        specs = check_methods(spec.methods)
        if not spec.images:
            raise XaibenchError("name at least one image file: xaibench explain IMAGE [IMAGE ...]")
        if spec.topk is not None and spec.class_name is not None:
            raise XaibenchError("--topk and --class exclude each other; give one of them")
        topk = DEFAULT_TOPK if spec.topk is None else spec.topk
        if topk < 1:
            raise XaibenchError(f"--topk must be at least 1, got {topk}")
        viz.check_style(spec.cmap, spec.alpha)
        check_figsize(spec.figsize)
        out, out_file, fmt = explain_output(spec)
        figures.check_dpi(spec.dpi)
        if spec.figsize is not None and fmt in ("png", "jpg"):  # (a default size is checked when the figure is drawn)
            figures.check_raster_size(*spec.figsize, spec.dpi)
        writable_folder(out)
        tell = _Tell(on_figure, on_skip)
        if out_file is not None:  # the file the user named: replaced if it exists
            return _explain(spec, specs, topk, fmt, tell, out_file=out_file)
        # a folder, maybe the user's own (the default is the current one): only figures that explain wrote
        # there before, unchanged since, are replaced
        with OutputFolder(out, "explain") as folder:
            return _explain(spec, specs, topk, fmt, tell, folder=folder)


@dataclass(frozen=True)
class _Tell:
    """The caller's callbacks, and the result they are told of."""

    on_figure: Callable[[Path], None] | None
    on_skip: Callable[[str], None] | None
    result: ExplainResult = field(default_factory=ExplainResult)

    def skipped(self, reason: str) -> None:
        self.result.skipped.append(reason)
        if self.on_skip is not None:
            self.on_skip(reason)

    def written(self, path: Path) -> None:
        self.result.written.append(path)
        if self.on_figure is not None:
            self.on_figure(path)


def _explain(
    spec: ExplainSpec, specs: list[MethodSpec], topk: int, fmt: str, tell: _Tell, *,
    out_file: Path | None = None, folder: OutputFolder | None = None,
) -> ExplainResult:
    """The figures once the spec is checked: one per image, into ``out_file`` (one image) or ``folder``."""
    images, failed = [], []
    for image in spec.images:  # missing files fail here, before the model is loaded
        try:
            figures.check_image_file(image)
            images.append(image)
        except XaibenchError as error:
            failed.append(" ".join(str(error).split()))
    if not images:
        more = f" (and {len(failed) - 1} more image{'s' if len(failed) > 2 else ''})" if len(failed) > 1 else ""
        raise XaibenchError(f"{failed[0]}{more}")
    for reason in failed:
        tell.skipped(reason)
    torch.manual_seed(spec.seed)
    model = load(one_model(spec, "explain"), spec)
    if spec.class_name is None:
        figures.check_topk(model, topk)
        class_label = None
    else:
        class_label = model.class_names[figures.resolve_class(model, spec.class_name)]
    explainers = [create(s, model, spec.seed) for s in specs]
    methods = [e.name for e in explainers]
    names: list[str] = []
    for image in images:  # two images with one stem in one call: keep both figures
        name = figures.figure_file_name(image, methods, fmt, class_label)
        for k in range(2, 10_000):
            if name not in names:
                break
            name = figures.figure_file_name(f"{Path(image).stem}-{k}", methods, fmt, class_label)
        names.append(name)
    if folder is not None:
        folder.check(names)  # a figure of these names that explain did not write is refused before any work
    for image, name in zip(images, names):
        try:
            tensor, _ = figures.load_photo(image, tuple(model.input_size))
        except XaibenchError as error:
            if len(spec.images) == 1:  # nothing else to explain: a plain error
                raise
            tell.skipped(" ".join(str(error).split()))
            continue
        fig = figures.explain_figure(
            tensor, model, explainers, topk=topk, class_name=spec.class_name, cmap=spec.cmap, alpha=spec.alpha,
            figsize=spec.figsize, title=Path(image).name,
        )
        if folder is None:
            path = figures.save_figure(fig, out_file, dpi=spec.dpi)
        else:
            path = folder.write_bytes(name, figures.figure_bytes(fig, fmt, dpi=spec.dpi))
        tell.written(path)
    if not tell.result.written:
        raise XaibenchError(f"none of the {len(spec.images)} images could be read; nothing explained")
    return tell.result
