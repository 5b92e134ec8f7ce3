"""Mixed precision (xaibench/precision.py): ``--precision bf16|fp16`` runs the network under autocast,
records itself, keeps the maps of the methods that allow it close to fp32's, and refuses the others."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import xaibench
from conftest import FlattenHeadNet, tiny_model
from xaibench.common_options import parse_specs
from xaibench.errors import XaibenchError
from xaibench.harness import read_kept_maps, read_per_image
from xaibench.precision import PRECISIONS, autocast, check_precision, reduced
from xaibench.runner import RunSpec, _explainers_for


@pytest.fixture(scope="module")
def model():
    return xaibench.load_model("builtin")


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_autocast_runs_the_network_in_the_precision_and_fp32_as_it_is(precision) -> None:
    layer = torch.nn.Linear(4, 2)
    with autocast(torch.device("cpu"), precision):
        assert reduced() and layer(torch.ones(1, 4)).dtype == PRECISIONS[precision]
    with autocast(torch.device("cpu"), "fp32"):
        assert not reduced() and layer(torch.ones(1, 4)).dtype == torch.float32
    assert not reduced()


def test_an_unknown_precision_and_each_refusing_method_are_named(model) -> None:
    with pytest.raises(XaibenchError, match="--precision must be one of fp32, bf16, fp16; got 'fp8'"):
        check_precision("fp8")
    explainers = [xaibench.create_explainer(name, model) for name in ("cam", "saliency", "occlusion")]
    check_precision("fp32", explainers)
    with pytest.raises(XaibenchError) as refused:
        check_precision("bf16", explainers)
    message = str(refused.value)
    assert "saliency (its map is a gradient with respect to the pixels" in message
    assert "occlusion (each value is the drop of the score" in message and "cam" not in message.split(":")[1]
    assert message.endswith("leave them out, or run them with --precision fp32")


def test_ablation_cam_refuses_only_its_general_path(model) -> None:
    """Forced by ``closed_form=False`` or by a head that is not GAP -> linear: refused before the run
    starts (the head is probed in fp32), and at run time should the head change."""
    closed = xaibench.create_explainer("ablationcam", model)
    general = xaibench.create_explainer("ablationcam", model, closed_form=False)
    assert closed.full_precision_only is None and "(y - y_k) / y" in general.full_precision_only
    flatten_head = xaibench.create_explainer("ablationcam", tiny_model(FlattenHeadNet()))
    with pytest.raises(XaibenchError, match=r"ablationcam \(its head is not global average pooling into one nn.Linear, "
                                            r"so it takes the general path: each weight is the relative drop"):
        check_precision("bf16", [flatten_head])
    check_precision("bf16", [xaibench.create_explainer("ablationcam", tiny_model())])  # TinyGapNet: closed form
    images, targets = torch.rand(2, 3, *model.input_size, generator=torch.Generator().manual_seed(0)), torch.tensor([0, 1])
    with autocast(torch.device("cpu"), "bf16"):
        assert torch.isfinite(closed(images, targets)).all()
        closed.closed_form = False  # as if the head were not GAP -> linear: the general path, refused at run time
        with pytest.raises(XaibenchError, match="takes the general path .* run it with --precision fp32"):
            closed(images, targets)


def test_methods_all_leaves_out_the_methods_that_refuse_the_precision_with_a_note(model) -> None:
    notes: list[str] = []
    kept, built = _explainers_for([model], parse_specs("cam,saliency,gradcam"), seed=0, leave_out_misfits=True,
                                  notes=notes, precision="bf16")
    assert [s.name for s in kept] == ["cam", "gradcam"] and [e.name for e in built[0]] == ["cam", "gradcam"]
    assert len(notes) == 1 and notes[0].startswith("--methods all: left out saliency: --precision bf16 would change")
    with pytest.raises(XaibenchError, match="--precision bf16 would change what these methods' maps mean: saliency"):
        xaibench.run(RunSpec(methods="cam,saliency", n=4, precision="bf16", report=False))


def test_a_bf16_run_records_its_precision_keeps_the_maps_close_and_resumes_only_in_bf16(tmp_path) -> None:
    """The same built-in run in fp32 and bf16: config.json says which; each kept map correlates with
    fp32's at r >= 0.99 (CAM's weights applied to the fp32 classification pass's features in bf16);
    the predictions, from that pass, are fp32's; and the bf16 folder resumes only in bf16."""
    runs = {}
    for precision in ("fp32", "bf16"):
        spec = RunSpec(methods="cam,gradcam", n=8, batch_size=4, precision=precision, keep_maps="full:float32",
                       out=tmp_path / precision, report=False)
        xaibench.run(spec)
        runs[precision] = read_kept_maps(spec.out).sort_values(["index", "method"]).reset_index(drop=True)
    config = {p: json.loads((tmp_path / p / "config.json").read_text()) for p in runs}
    assert config["bf16"]["precision"] == "bf16" and config["fp32"]["precision"] == "fp32"
    full, half = runs["fp32"], runs["bf16"]
    assert full[["index", "method"]].equals(half[["index", "method"]]) and len(full) == 16
    for a, b in zip(full["map"], half["map"]):
        assert not np.array_equal(a, b) and np.corrcoef(a.ravel(), b.ravel())[0, 1] >= 0.99  # bf16 ran
    predictions = {p: read_per_image(tmp_path / p).sort_values(["index", "method"]).prediction for p in runs}
    assert predictions["fp32"].tolist() == predictions["bf16"].tolist()
    older = dict(config["fp32"])  # a folder of 0.4.0, from before --precision: resumed as fp32
    del older["precision"]
    (tmp_path / "fp32" / "config.json").write_text(json.dumps(older))
    xaibench.run(RunSpec(methods="cam,gradcam", n=8, batch_size=4, keep_maps="full:float32", out=tmp_path / "fp32",
                         mode="resume", report=False))
    with pytest.raises(XaibenchError, match="'precision' was 'bf16', now 'fp32'"):
        xaibench.run(RunSpec(methods="cam,gradcam", n=8, batch_size=4, keep_maps="full:float32", out=tmp_path / "bf16",
                             mode="resume", report=False))
