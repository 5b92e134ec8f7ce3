"""Sanity checks (Adebayo et al. 2018): blocks, cascading randomization, the similarity measures with
known answers, the data randomization network, and `xaibench sanity` end to end."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from scipy import stats
from skimage.feature import hog
from skimage.metrics import structural_similarity
from torch import nn

import xaibench
from xaibench import map_similarity, sanity, shapes_net
from xaibench.cli import main
from xaibench.explainer import normalize_maps
from xaibench.method_spec import MethodSpec
from xaibench.randomization import Block, cascading_randomization, randomization_blocks, randomize_block, with_network

from conftest import tiny_model

SHAPES_BLOCKS = [
    "features.0+features.1", "features.4+features.5", "features.8+features.9",
    "features.11+features.12", "features.14+features.15", "classifier",
]


def _images(n: int = 6) -> tuple[xaibench.Model, torch.Tensor, torch.Tensor]:
    model = xaibench.load_model("builtin")
    data = xaibench.load_dataset("builtin", image_size=model.input_size, size=n)
    return model, torch.stack([data[i].image for i in range(n)]), torch.tensor([data[i].label for i in range(n)])


# ----------------------------------------------------------------------------------------- the blocks


def test_blocks_of_the_builtin_network_are_its_convolutions_with_their_batch_norms_then_the_classifier():
    network = xaibench.load_model("builtin").network
    assert [b.name for b in randomization_blocks(network, torch.zeros(1, 3, 64, 64))] == SHAPES_BLOCKS


def test_blocks_follow_the_forward_order_not_the_registration_order():
    class Reversed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 3)  # registered first, called last
            self.unused = nn.Linear(2, 2)
            self.norm = nn.BatchNorm2d(4)
            self.conv = nn.Conv2d(3, 4, 3)

        def forward(self, x):
            return self.fc(self.norm(self.conv(x)).mean((2, 3)))

    blocks = randomization_blocks(Reversed(), torch.zeros(1, 3, 8, 8))
    assert blocks == [Block(("conv", "norm")), Block(("fc",))]  # the norm joins its convolution


def test_blocks_of_efficientnet_lite0_are_stem_mbconv_blocks_head_and_classifier():
    network = xaibench.load_model("efficientnet_lite0").network
    names = [b.name for b in randomization_blocks(network, torch.zeros(1, 3, 224, 224))]
    assert names == ["_conv_stem+_bn0", *[f"_blocks.{i}" for i in range(16)], "_conv_head+_bn1", "_fc"]


# ----------------------------------------------------------------------------- cascading randomization


def _changed(a: nn.Module, b: nn.Module) -> set[str]:
    return {name for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()) if not torch.equal(p, q)}


def test_cascading_randomization_randomizes_the_top_blocks_of_a_copy_and_leaves_the_model_alone():
    model = xaibench.load_model("builtin")
    trained = {k: v.clone() for k, v in model.network.state_dict().items()}
    blocks = randomization_blocks(model.network, torch.zeros(1, 3, 64, 64))
    state = torch.random.get_rng_state()
    seen = []
    for depth, block, randomized in cascading_randomization(model, blocks, seed=3):
        assert randomized.network is not model.network
        assert randomized.target_layer is randomized.network.get_submodule(model.target_layer_name)
        assert randomized.classifier is randomized.network.classifier
        top = {name for b in blocks[len(blocks) - depth:] for name in b.modules}
        changed = _changed(model.network, randomized.network)
        # the modules of the top `depth` blocks changed, none below
        assert {n.rsplit(".", 1)[0] for n in changed} == top, depth
        seen.append(block.name)
    assert seen == SHAPES_BLOCKS[::-1]
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's random state is kept
    assert all(torch.equal(trained[k], v) for k, v in model.network.state_dict().items())


def test_randomization_is_seeded_per_block():
    model = xaibench.load_model("builtin")
    blocks = randomization_blocks(model.network, torch.zeros(1, 3, 64, 64))

    def weights(seed):
        return [randomized.network.features[11].weight.clone() for _, _, randomized in cascading_randomization(model, blocks, seed)][-1]

    assert torch.equal(weights(0), weights(0)) and not torch.equal(weights(0), weights(1))
    # blocks of equal shape draw different weights (Quantus seeds every layer alike)
    last = [r.network for _, _, r in cascading_randomization(model, blocks, 0)][-1]
    assert not torch.equal(last.features[8].weight, last.features[11].weight)


def test_randomize_block_resets_batch_norm_statistics_and_redraws_parameters_without_an_initializer():
    class Scale(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.gamma = nn.Parameter(torch.full((4,), 7.0))

    network = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), Scale())
    network[1].running_mean.fill_(5.0)
    before = network[0].weight.clone()
    randomize_block(network, Block(("0", "1", "2")), seed=0)
    assert not torch.equal(network[0].weight, before)
    assert torch.equal(network[1].running_mean, torch.zeros(4)) and torch.equal(network[1].weight, torch.ones(4))
    assert not torch.equal(network[2].gamma, torch.full((4,), 7.0))


# ---------------------------------------------------------------------------- the similarity measures


def test_spearman_is_scipys_and_ranks_with_and_without_signs():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(32, 32)), rng.normal(size=(32, 32))
    assert map_similarity.spearman(a, b) == pytest.approx(stats.spearmanr(a.ravel(), b.ravel()).statistic, abs=1e-12)
    assert map_similarity.spearman(a, np.exp(a)) == pytest.approx(1.0)  # any increasing transform
    assert map_similarity.spearman(a, -a) == pytest.approx(-1.0)
    assert map_similarity.spearman_abs(a, -a) == pytest.approx(1.0)  # the sign is what differs
    assert np.isnan(map_similarity.spearman(a, np.zeros_like(a)))  # a constant map has no ranks


def test_ssim_and_hog_compare_the_scaled_absolute_maps():
    rng = np.random.default_rng(1)
    a, b = rng.random((64, 64)) - 0.3, rng.random((64, 64))
    scaled_a, scaled_b = np.abs(a) / np.abs(a).max(), b / b.max()
    assert map_similarity.ssim(a, b) == pytest.approx(structural_similarity(scaled_a, scaled_b, data_range=1.0))
    assert map_similarity.ssim(a, 3 * a) == pytest.approx(1.0) and map_similarity.ssim(a, -a) == pytest.approx(1.0)
    expected = stats.pearsonr(hog(scaled_a), hog(scaled_b)).statistic
    assert map_similarity.hog_similarity(a, b) == pytest.approx(expected)
    assert map_similarity.hog_similarity(a, 2 * a) == pytest.approx(1.0)
    assert np.isnan(map_similarity.hog_similarity(a, np.ones_like(a)))  # no gradients, no orientation


# ------------------------------------------------------------------------- the test on explanations


def test_explanation_keeps_the_raw_signed_map():
    model, images, targets = _images(4)
    explanation = xaibench.create_explainer("cam", model).explain(images, targets)
    assert (explanation.raw < 0).any()  # CAM's class map has signs
    assert torch.allclose(normalize_maps(explanation.raw), explanation.maps)


def test_a_model_independent_map_stays_identical_and_model_dependent_maps_drift():
    model, images, targets = _images(6)
    specs = [MethodSpec("random", {"seed": 0}), MethodSpec("cam"), MethodSpec("saliency")]
    shown = sanity.SanityMaps()
    per_image = pd.concat(sanity.model_randomization(model, images, targets, specs, shown=shown, keep=2), ignore_index=True)
    summary = sanity.summarize_sanity(per_image)
    assert list(summary.columns) == sanity.SANITY_COLUMNS
    assert sorted(summary["depth"].unique()) == list(range(7))
    assert shown.layers == ["original", *SHAPES_BLOCKS[::-1]]
    assert shown.stacked()["cam"].shape == (7, 2, 64, 64)
    first = summary[summary["depth"] == 0]
    assert np.allclose(first["value"], 1.0) and (first["n"] == 6).all()  # each map is itself
    # random's map is drawn from the image and the seed alone: 1 at every depth (Adebayo's edge detector)
    assert np.allclose(summary.loc[summary["method"] == "random", "value"], 1.0)
    # CAM and saliency depend on the weights; with every block random their maps share little
    full = summary[(summary["depth"] == 6) & (summary["similarity"] == "spearman_abs")].set_index("method")["value"]
    assert full["cam"] < 0.6 and full["saliency"] < 0.6
    # only CAM's maps have signs, so only CAM has signed-rank rows
    assert set(summary.loc[summary["similarity"] == "spearman", "method"]) == {"cam"}


def test_randomization_test_is_reproducible_from_the_seed():
    model, images, targets = _images(3)
    specs = [MethodSpec("gradcam")]

    def run(seed):
        return pd.concat(sanity.model_randomization(model, images, targets, specs, seed=seed), ignore_index=True)

    pd.testing.assert_frame_equal(run(0), run(0))
    assert not run(0)["value"].equals(run(1)["value"])


def test_data_randomization_of_a_model_with_itself_is_one():
    model, images, targets = _images(4)
    rows = sanity.data_randomization(model, model, images, targets, [MethodSpec("cam"), MethodSpec("saliency")])
    assert np.allclose(rows["value"], 1.0)
    other = with_network(model, shapes_net.load_shapes_net(0, permuted_labels=True))
    rows = sanity.data_randomization(model, other, images, targets, [MethodSpec("cam")])
    assert rows.loc[rows["similarity"] == "spearman_abs", "value"].mean() < 0.9


def test_the_permuted_label_network_ships_and_loads_without_training(tmp_path, monkeypatch):
    assert shapes_net.shipped_path(0, permuted_labels=True).is_file(), (
        "run python -c 'from xaibench.shapes_net import train_builtin; train_builtin(0, \"xaibench/weights\", "
        "permuted_labels=True)' and commit the file"
    )
    monkeypatch.setattr(shapes_net, "train_shapes_net", lambda *a, **k: pytest.fail("retrained"))
    network = shapes_net.load_shapes_net(0, tmp_path, permuted_labels=True)
    assert list(tmp_path.iterdir()) == []
    trained = shapes_net.load_shapes_net(0, tmp_path)
    assert not torch.equal(network.classifier.weight, trained.classifier.weight)


def test_training_on_permuted_labels_measures_the_fit_to_those_labels():
    _, labels = shapes_net._render(64, "train", 0)
    network, accuracy = shapes_net.train_shapes_net(0, n_train=64, epochs=1, n_test=10, permute_labels=True)
    images, _ = shapes_net._render(64, "train", 0)
    permuted = labels[torch.randperm(64, generator=torch.Generator().manual_seed(1))]
    assert not torch.equal(permuted, labels)
    with torch.no_grad():
        predictions = network(shapes_net._normalise(images)).argmax(1)
    assert accuracy == pytest.approx((predictions == permuted).float().mean().item())


# ---------------------------------------------------------------------------------- xaibench sanity


def test_cli_sanity_writes_the_table_the_figures_and_the_data_randomization(tmp_path, capsys):
    out = tmp_path / "sanity"
    assert main(["sanity", "--methods", "cam,saliency", "--n", "5", "--show", "2", "--out", str(out)]) == 0
    summary = pd.read_csv(out / "sanity.csv")
    assert list(summary.columns) == sanity.SANITY_COLUMNS
    assert summary.groupby("method")["depth"].max().to_dict() == {"cam": 6, "saliency": 6}
    assert set(summary["similarity"]) == {"spearman_abs", "spearman", "ssim", "hog"}
    original = summary[summary["depth"] == 0]
    assert (original["n"] == 5).all() and np.allclose(original["value"], 1.0)  # each map against itself
    assert summary["n"].le(5).all()
    per_image = pd.read_csv(out / "sanity_per_image.csv")
    recomputed = per_image.groupby(["method", "depth", "similarity"])["value"].mean()
    assert np.allclose(summary.set_index(["method", "depth", "similarity"])["value"].sort_index(), recomputed.sort_index())
    data = pd.read_csv(out / "data_randomization.csv")
    assert set(data["method"]) == {"cam", "saliency"} and data["n"].max() == 5
    for figure in ("sanity.png", "sanity_maps.png"):
        with Image.open(out / figure) as image:
            assert image.width > 500 and image.height > 300
    text = (out / "sanity.md").read_text()
    assert "## Every block randomized (depth 6)" in text and "## Data randomization" in text
    assert "features.14+features.15" in text
    # an existing check is not overwritten by accident
    assert main(["sanity", "--methods", "cam", "--n", "2", "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--model", "builtin,efficientnet_lite0"], "one model at a time"),
        (["--methods", "camm"], "did you mean"),
        (["--n", "0"], "--n must be at least 1"),
        (["--show", "-1"], "--show must be at least 0"),
    ],
)
def test_cli_sanity_refuses_bad_arguments_in_one_line(arguments, message, tmp_path, capsys):
    assert main(["sanity", "--out", str(tmp_path / "x"), *arguments]) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1


# ------------------------------------------------------------------------------ against Quantus


def test_the_top_layer_is_randomized_as_quantus_does_given_the_same_seed():
    """Quantus's cascading randomization seeds every layer with ``seed + 1`` and calls its
    ``reset_parameters()``; xaibench's first block (the classifier) is drawn the same way from its
    own seed, so with Quantus's seed chosen to match, the randomized classifiers are equal."""
    pytest.importorskip("quantus")
    from quantus.helpers.model.pytorch_model import PyTorchModel

    from xaibench.randomization import block_seed

    model = tiny_model()
    blocks = randomization_blocks(model.network, torch.zeros(1, 3, 16, 16))
    _, block, ours = next(iter(cascading_randomization(model, blocks, seed=0)))
    assert block.name == "fc"
    wrapped = PyTorchModel(model.network, channel_first=True)
    name, theirs = next(wrapped.get_random_layer_generator(order="top_down", seed=block_seed(0, 1) - 1))
    assert name == "fc"
    assert torch.equal(ours.network.fc.weight, theirs.fc.weight) and torch.equal(ours.network.fc.bias, theirs.fc.bias)
    assert not torch.equal(ours.network.fc.weight, model.network.fc.weight)


def test_similarities_agree_with_quantus_on_maps_in_zero_to_one():
    pytest.importorskip("quantus")
    from quantus.functions.similarity_func import correlation_spearman
    from quantus.functions.similarity_func import ssim as quantus_ssim

    rng = np.random.default_rng(2)
    for _ in range(3):
        a, b = rng.random((48, 48)), rng.random((48, 48))
        a.flat[0], b.flat[0] = 0.0, 0.0  # scaled |map| spans [0, 1]: Quantus's data range is 1 too
        assert map_similarity.spearman_abs(a, b) == pytest.approx(correlation_spearman(a.ravel(), b.ravel()))
        assert map_similarity.ssim(a, b) == pytest.approx(quantus_ssim(a / a.max(), b / b.max()))


def test_cli_sanity_reports_and_skips_an_unreadable_image(tmp_path, capsys):
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.png"):
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(tmp_path / name)
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a JPEG")
    rows = ["image,label,x0,y0,x1,y1"] + [f"{n},disk,4,4,40,30" for n in ("a.png", "broken.jpg", "b.png")]
    (tmp_path / "boxes.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "sanity"
    argv = ["sanity", "--methods", "cam", "--dataset", f"csv:{tmp_path / 'boxes.csv'}", "--show", "0", "--n", "5",
            "--out", str(out)]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "skipped unreadable image 1" in err
    assert "xaibench: --n 5: the data set has only 3 images; the sanity check uses those 3\n" in err
    config = json.loads((out / "sanity_config.json").read_text())
    assert config["image_ids"] == ["a.png", "b.png"] and config["skipped"][0]["index"] == 1
    assert pd.read_csv(out / "sanity.csv")["n"].max() == 2
    assert not (out / "sanity_maps.png").exists()  # --show 0: no maps to draw


def test_cli_sanity_keeps_files_it_did_not_write_even_with_overwrite(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "sanity.md").write_text("my notes on sanity checks\n")
    for extra in ([], ["--overwrite"]):
        assert main(["sanity", "--methods", "cam", "--n", "2", "--out", str(out), *extra]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"{out / 'sanity.md'} was not written by xaibench sanity" in err
    assert [p.name for p in out.iterdir()] == ["sanity.md"]
    assert (out / "sanity.md").read_text() == "my notes on sanity checks\n"


def test_write_sanity_replaces_its_own_files_and_removes_those_it_no_longer_writes(tmp_path):
    per_image = pd.DataFrame({"method": "cam", "depth": [0, 0, 1, 1], "layer": ["original", "original", "fc", "fc"],
                              "image": [0, 1, 0, 1], "similarity": "spearman_abs", "value": [1.0, 1.0, 0.5, 0.25]})
    data = per_image[per_image.depth == 1].drop(columns=["depth", "layer"])
    config = {"model": "builtin", "seed": 0}
    (tmp_path / "notes.txt").write_text("mine")
    sanity.write_sanity(tmp_path, config, per_image, sanity.SanityMaps(), torch.zeros(0, 3, 8, 8), data_per_image=data)
    assert (tmp_path / "data_randomization.csv").exists()
    sanity.write_sanity(tmp_path, config, per_image.assign(value=0.5), sanity.SanityMaps(), torch.zeros(0, 3, 8, 8))
    assert sorted(p.name for p in tmp_path.iterdir()) == [".xaibench-outputs.json", "notes.txt", "sanity.csv", "sanity.md",
                                                          "sanity.png", "sanity_config.json", "sanity_per_image.csv"]
    assert (tmp_path / "notes.txt").read_text() == "mine"
    assert pd.read_csv(tmp_path / "sanity_per_image.csv")["value"].eq(0.5).all()
