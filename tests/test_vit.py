"""Vision transformers: the target layer is the last block's first norm, its tokens are explained as
a patch grid's maps (the class token left out), and the CAM family agrees with pytorch-grad-cam given
its documented ``reshape_transform``; CAM says why it does not apply."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import Tensor
from torchvision.models.vision_transformer import VisionTransformer

import xaibench
from conftest import pearson, post
from xaibench.errors import LayerError
from xaibench.feature_maps import TokenGrid, infer_token_grid

pgc = pytest.importorskip("pytorch_grad_cam")
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402

SIDE, PATCH = 32, 8  # a 4 x 4 grid of patches after the class token


@pytest.fixture(scope="module")
def vit() -> xaibench.Model:
    """A small torchvision ViT with random weights (seed 0), its head drawn at random too (torchvision
    initialises it to zeros, which would make every logit 0)."""
    torch.manual_seed(0)
    network = VisionTransformer(image_size=SIDE, patch_size=PATCH, num_layers=2, num_heads=2, hidden_dim=32,
                                mlp_dim=64, num_classes=5).eval()
    torch.nn.init.normal_(network.heads.head.weight, std=0.5)
    return xaibench.wrap_model(network, input_size=SIDE)


def test_the_target_layer_is_the_last_blocks_first_norm_seen_as_a_grid(vit) -> None:
    assert vit.target_layer_name == "encoder.layers.encoder_layer_1.ln_1"
    assert vit.feature_grid == TokenGrid(prefix=1, height=SIDE // PATCH, width=SIDE // PATCH)


def test_vit_b_16_and_its_token_grid(caplog) -> None:
    with caplog.at_level("INFO"):
        model = xaibench.load_model("vit_b_16", weights=None)
    assert model.target_layer_name == "encoder.layers.encoder_layer_11.ln_1" and model.classifier_name == "heads.head"
    assert model.feature_grid == TokenGrid(1, 14, 14)
    assert "vit_b_16: target layer 'encoder.layers.encoder_layer_11.ln_1' (found automatically), its tokens" in caplog.text
    images = torch.rand(1, 3, 224, 224)
    with pytest.raises(LayerError, match="weights of its classifier 'heads.head' are all zero"):
        xaibench.create_explainer("cam", model)(images, torch.tensor([0]))


@pytest.mark.parametrize(("shape", "size", "grid"), [
    ((2, 197, 768), (224, 224), TokenGrid(1, 14, 14)),  # ViT-B/16: the class token
    ((2, 198, 384), (224, 224), TokenGrid(2, 14, 14)),  # DeiT distilled: class and distillation tokens
    ((2, 201, 768), (224, 224), TokenGrid(5, 14, 14)),  # ViT with 4 registers
    ((2, 196, 768), (224, 224), TokenGrid(0, 14, 14)),  # no token of its own (global pooling)
    ((2, 1 + 12 * 16, 64), (96, 128), TokenGrid(1, 12, 16)),  # a wide input, 8 px patches
    ((2, 1000), (224, 224), None), ((2, 7, 7, 768), (224, 224), None),
])
def test_the_token_grid_is_found_from_the_length_and_the_input(shape, size, grid) -> None:
    assert infer_token_grid(shape, size) == grid


def test_tokens_become_maps_and_back() -> None:
    grid = TokenGrid(2, 3, 4)
    tokens = torch.randn(5, 2 + 12, 7)
    maps = grid.to_maps(tokens)
    assert maps.shape == (5, 7, 3, 4)
    assert torch.equal(maps[:, :, 1, 2], tokens[:, 2 + 1 * 4 + 2, :])  # row 1, column 2: patch 6
    assert torch.equal(grid.restore(maps, tokens), tokens)
    copies = grid.restore(maps[:1].expand(3, -1, -1, -1), tokens[:1])  # copies of one image's tokens
    assert copies.shape == (3, 14, 7) and torch.equal(copies[2], tokens[0])


def _reshape_transform(tensor: Tensor, height: int = SIDE // PATCH, width: int = SIDE // PATCH) -> Tensor:
    """pytorch-grad-cam's documented reshape_transform for ViT (its tutorial, vit_example.py)."""
    result = tensor[:, 1:, :].reshape(tensor.size(0), height, width, tensor.size(2))
    return result.transpose(2, 3).transpose(1, 2)


def _peer(cls: type, model: xaibench.Model, images: Tensor, targets: Tensor) -> Tensor:
    """pytorch-grad-cam's raw map (its hooks with the reshape_transform, its backward pass, its
    get_cam_image and ReLU), post-processed as xaibench does."""
    wanted = [ClassifierOutputTarget(int(t)) for t in targets]
    with cls(model=model.network, target_layers=[model.target_layer], reshape_transform=_reshape_transform) as cam:
        outputs = cam.activations_and_grads(model.normalize(images))
        if cam.uses_gradients:
            sum(t(o) for t, o in zip(wanted, outputs)).backward()
        acts = cam.activations_and_grads.activations[0].numpy()
        grads = cam.activations_and_grads.gradients[0].numpy() if cam.uses_gradients else None
        raw = cam.get_cam_image(model.normalize(images), model.target_layer, wanted, acts, grads, False)
    model.network.zero_grad(set_to_none=True)
    return post(np.maximum(raw, 0), images.shape[-2:])


@pytest.mark.parametrize(("name", "peer"), [("gradcam", "GradCAM"), ("gradcampp", "GradCAMPlusPlus"),
                                            ("layercam", "LayerCAM"), ("xgradcam", "XGradCAM")])
def test_the_cam_family_on_a_vit_agrees_with_pytorch_grad_cam(vit, name, peer) -> None:
    torch.manual_seed(1)
    images, targets = torch.rand(3, 3, SIDE, SIDE), torch.tensor([0, 2, 4])
    ours = xaibench.create_explainer(name, vit)(images, targets)
    theirs = _peer(getattr(pgc, peer), vit, images, targets)
    r = pearson(ours, theirs)
    both_flat = (ours.flatten(1).std(1) == 0) & (theirs.flatten(1).std(1) == 0)  # all zero after both ReLUs
    assert bool(((r >= 0.99) | both_flat).all()) and not bool(both_flat.all()), r.tolist()


def test_ablation_and_score_cam_run_on_tokens(vit) -> None:
    """They replace or read the target layer's output: on a ViT the maps go back into tokens, the
    class token kept. Ablation-CAM's general path against its definition, channel by channel."""
    torch.manual_seed(2)
    images, targets = torch.rand(1, 3, SIDE, SIDE), torch.tensor([3])
    maps = xaibench.create_explainer("ablationcam", vit)(images, targets)
    assert maps.shape == (1, SIDE, SIDE) and float(maps.std()) > 0
    with torch.no_grad():
        tokens = {}
        handle = vit.target_layer.register_forward_hook(lambda m, i, o: tokens.setdefault("out", o))
        y = vit(images)[0, 3]
        handle.remove()
        features = vit.feature_grid.to_maps(tokens["out"])[0]
        drops = []
        for k in range(features.shape[0]):
            ablated = features.clone()
            ablated[k] = 0
            hook = vit.target_layer.register_forward_hook(
                lambda m, i, o, a=ablated: vit.feature_grid.restore(a[None], o))
            drops.append(float((y - vit(images)[0, 3]) / y))
            hook.remove()
        expected = torch.relu((torch.tensor(drops)[:, None, None] * features).sum(0))
    assert float(pearson(maps, post(expected[None], (SIDE, SIDE)))[0]) >= 0.999
    assert float(xaibench.create_explainer("scorecam", vit)(images, targets).std()) > 0


def test_a_vit_of_your_own_runs_from_the_command_line_and_config_says_how_its_tokens_were_read(tmp_path) -> None:
    import json

    from xaibench.cli import main
    from xaibench.data.shapes import SHAPE_CLASSES

    (tmp_path / "small_vit.py").write_text(
        "import torch\nfrom torchvision.models.vision_transformer import VisionTransformer\n\n\n"
        "def build():\n    torch.manual_seed(0)\n"
        f"    network = VisionTransformer(image_size={SIDE}, patch_size={PATCH}, num_layers=2, num_heads=2, "
        "hidden_dim=32, mlp_dim=64, num_classes=6)\n"
        "    torch.nn.init.normal_(network.heads.head.weight, std=0.5)\n    return network\n")
    (tmp_path / "classes.txt").write_text("\n".join(SHAPE_CLASSES))
    out = tmp_path / "run"
    assert main(["run", "--model", f"{tmp_path / 'small_vit.py'}:build", "--class-names", str(tmp_path / "classes.txt"),
                 "--image-size", str(SIDE), "--methods", "gradcam,layercam", "--n", "4", "--no-report", "--out", str(out)]) == 0
    model = json.loads((out / "config.json").read_text())["models"][0]
    assert model["target_layer"] == "encoder.layers.encoder_layer_1.ln_1"
    assert model["feature_grid"] == "tokens (N, L, C): 1 token of its own, then a 4 x 4 grid of patches, as maps (N, C, h, w)"
    assert main(["run", "--model", f"{tmp_path / 'small_vit.py'}:build", "--class-names", str(tmp_path / "classes.txt"),
                 "--image-size", str(SIDE), "--methods", "cam", "--n", "4", "--no-report", "--out", str(tmp_path / "r2")]) == 2


def test_attention_rollout_is_the_papers_product_of_the_blocks_attention(vit) -> None:
    """Abnar & Zuidema (ACL 2020): R = prod_l normalise_rows((A_l + I) / 2), the class token's row over
    the patches. Recomputed here in float64 numpy from each block's attention weights, which torch's
    MultiheadAttention gives when called again on the input its block gave it."""
    torch.manual_seed(3)
    images = torch.rand(2, 3, SIDE, SIDE)
    inputs = {}
    blocks = vit.network.encoder.layers
    handles = [block.ln_1.register_forward_hook(lambda m, i, o, k=k: inputs.setdefault(k, o.detach()))
               for k, block in enumerate(blocks)]
    with torch.no_grad():
        vit(images)
    for handle in handles:
        handle.remove()
    rollout = np.stack([np.eye(17)] * 2)
    for k, block in enumerate(blocks):
        x = inputs[k]
        with torch.no_grad():
            _, weights = block.self_attention(x, x, x, need_weights=True, average_attn_weights=False)
        a = (weights.double().numpy().mean(1) + np.eye(17)) / 2
        rollout = (a / a.sum(-1, keepdims=True)) @ rollout
    expected = rollout[:, 0, 1:].reshape(2, 4, 4)
    ours = xaibench.create_explainer("attention_rollout", vit).attribute(images, torch.tensor([0, 1]))
    assert np.allclose(ours.double().numpy(), expected, rtol=1e-5, atol=1e-7)


def test_attention_rollout_of_uniform_attention_is_known() -> None:
    """Queries and keys of zero make every attention row uniform, 1/L: then Ã = I/2 + U/2 with U = 11'/L
    idempotent, so after l blocks R = I/2**l + (1 - 1/2**l) U and every patch gets (1 - 1/2**l) / L."""
    from conftest import tiny_vit

    model = tiny_vit()
    with torch.no_grad():
        for block in model.network.encoder.layers:
            width = block.self_attention.embed_dim
            block.self_attention.in_proj_weight[: 2 * width] = 0
            block.self_attention.in_proj_bias[: 2 * width] = 0
    raw = xaibench.create_explainer("attention_rollout", model).attribute(torch.rand(1, 3, SIDE, SIDE), torch.tensor([0]))
    assert torch.allclose(raw, torch.full((1, 4, 4), (1 - 0.5**2) / 17), atol=1e-7)
