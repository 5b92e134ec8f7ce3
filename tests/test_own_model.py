"""A network of your own from the command line: ``--model my_net.py:build --weights my.pt`` (and
``package.module:build``), with its input size, normalisation and class names as options; what goes
wrong with the file, the function or the options is one line."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

import xaibench
from xaibench.cli import main
from xaibench.models import weights_digest

NET = '''
import torch
from torch import nn


class MyNet(nn.Module):
    """conv -> ReLU -> conv -> ReLU -> global average pooling -> linear: CAM applies."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, padding=1, stride=2),
                                      nn.ReLU())
        self.fc = nn.Linear(16, 6)

    def forward(self, x):
        return self.fc(self.features(x).mean((2, 3)))


def build():
    return MyNet()


def broken():
    raise RuntimeError("no GPU here")


def not_a_network():
    return 42
'''


@pytest.fixture()
def my_net(tmp_path) -> tuple[Path, Path]:
    """``my_net.py`` and ``my.pt``, the state dict of its network with weights of seed 1."""
    source = tmp_path / "my_net.py"
    source.write_text(NET)
    torch.manual_seed(1)
    network = xaibench.own_model.build(f"{source}:build")
    torch.save(network.state_dict(), tmp_path / "my.pt")
    return source, tmp_path / "my.pt"


def test_a_network_from_a_file_and_a_weights_file_runs_from_the_command_line(my_net, tmp_path) -> None:
    source, weights = my_net
    names = tmp_path / "names.txt"
    names.write_text("\n".join(["disk", "square", "triangle", "cross", "ring", "star"]) + "\n")  # the benchmark's
    out = tmp_path / "run"
    assert main(["run", "--model", f"{source}:build", "--weights", str(weights), "--class-names", str(names),
                 "--mean", "0.5,0.5,0.5", "--std", "0.25,0.25,0.25", "--image-size", "64", "--methods", "cam,gradcam",
                 "--n", "8", "--no-report", "--out", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())
    model = config["models"][0]
    assert model["name"] == "my_net:build" and model["target_layer"] == "features" and model["classifier"] == "fc"
    assert model["image_size"] == [64, 64] and model["weights"] == str(weights)
    loaded = xaibench.load_model(f"{source}:build", weights=weights, input_size=64, mean=(0.5,) * 3, std=(0.25,) * 3,
                                 class_names=names)
    assert model["weights_sha256"] == weights_digest(loaded.network)  # the file's weights, not the factory's
    assert loaded.class_names[:2] == ["disk", "square"] and loaded.mean == (0.5,) * 3 and loaded.input_size == (64, 64)
    summary = pd.read_csv(out / "summary.csv")
    assert set(summary.method) == {"cam", "gradcam"} and (summary.n == 8).all()


def test_a_network_from_an_importable_module(my_net, monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(my_net[0].parent))
    model = xaibench.load_model("my_net:build", weights=my_net[1], input_size=32)
    assert model.name == "my_net:build" and model.input_size == (32, 32) and model.class_names[0] == "class_0"
    assert model.target_layer_name == "features" and model.mean is None


@pytest.mark.parametrize(("argv", "message"), [
    (["--model", "nowhere.py:build"], "--model nowhere.py:build: there is no file nowhere.py"),
    (["--model", "{net}:missing"], "has no function 'missing' (it has MyNet, broken, build, not_a_network)"),
    (["--model", "{net}:broken"], "broken() raised RuntimeError: no GPU here"),
    (["--model", "{net}:not_a_network"], "not_a_network() returned a int, not a torch nn.Module"),
    (["--model", "no_such_package_here.nets:build"], "no module 'no_such_package_here' can be imported"),
    (["--model", "{net}:build", "--class-names", "{names}"], "has 6 outputs but --class-names names 2 classes"),
    (["--model", "{net}:build", "--mean", "0.5,0.5"], "--mean takes three numbers, one per RGB channel"),
    (["--model", "{net}:build", "--mean", "0.5,0.5,0.5", "--std", "0,1,1"], "--std takes three positive numbers"),
    (["--model", "{net}:build", "--mean", "0.5,0.5,0.5"], "give --mean and --std together"),
    (["--model", "builtin", "--class-names", "{names}"], "--class-names is for a network of your own"),
])
def test_what_goes_wrong_is_one_line(my_net, tmp_path, capsys, argv, message) -> None:
    names = tmp_path / "two.txt"
    names.write_text("a\nb\n")
    argv = [a.format(net=my_net[0], names=names) for a in argv]
    assert main(["run", *argv, "--image-size", "32", "--methods", "cam", "--n", "2", "--no-report",
                 "--out", str(tmp_path / "run")]) == 2
    error = capsys.readouterr().err.strip()
    assert message.format(net=my_net[0]) in error and "\n" not in error, error
