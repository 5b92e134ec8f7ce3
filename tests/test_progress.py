"""A long method's progress within a batch: what the methods report, and what the run's bar shows."""

from __future__ import annotations

import re

import pytest
import torch

import xaibench
from xaibench.harness import evaluate
from xaibench.progress import PassProgress, clock_text, progress_text

from conftest import tiny_model

#: The methods that run many passes per batch, with small budgets, and how many passes (or samples)
#: a batch of 4 images runs: their totals by hand (Score-CAM, IS-CAM and SS-CAM skip feature maps, so
#: their totals are checked against the feature maps that are not constant: None here).
LONG_METHODS = {
    "scorecam": ({"batch_size": 3}, None),
    "sscam": ({"num_samples": 2, "batch_size": 3}, None),
    "iscam": ({"num_samples": 2, "batch_size": 3}, None),
    "ablationcam": ({"closed_form": False, "batch_size": 2}, None),
    "rise": ({"n_masks": 40, "batch_size": 16}, 4 * 40),
    "occlusion": ({"window": 8, "stride": 4}, 4 * (3 * 3 + 1)),
    "lime": ({"n_samples": 30, "n_segments": 8}, 4 * 30),
    "kernelshap": ({"n_samples": 30, "n_segments": 8}, 4 * 30),
    "smoothgrad": ({"n_samples": 5, "batch_size": 3}, 4 * 5),
    "vargrad": ({"n_samples": 5, "batch_size": 3}, 4 * 5),
    "gradientshap": ({"n_samples": 5, "batch_size": 3}, 4 * 5),
    "integrated_gradients": ({"n_steps": 6, "internal_batch_size": 2}, 4 * 6),
    "smoothgradcampp": ({"num_samples": 3, "batch_size": 5}, 4 * 3),
}


@pytest.mark.parametrize("name", LONG_METHODS)
def test_long_methods_report_passes_that_count_up_to_their_total(name, model, batch) -> None:
    options, expected = LONG_METHODS[name]
    explainer = xaibench.create_explainer(name, model, **options)
    calls: list[tuple[int, int]] = []
    reported = explainer.explain(*batch, progress=lambda done, total: calls.append((done, total)))
    assert len(calls) >= 2, calls  # more than one batch of passes: progress within the call
    done, totals = [d for d, _ in calls], {t for _, t in calls}
    assert len(totals) == 1 and done == sorted(set(done)) and done[0] > 0 and done[-1] == calls[0][1]
    if expected is not None:
        assert done[-1] == expected
    assert explainer._progress is None  # the callback lives for the one call
    assert torch.equal(explainer.explain(*batch).maps, reported.maps)  # reporting changes no map


def test_score_cam_counts_one_pass_per_feature_map_that_is_not_constant(model, batch) -> None:
    images, targets = batch
    calls: list[tuple[int, int]] = []
    xaibench.create_explainer("scorecam", model, batch_size=3).explain(images, targets, progress=lambda d, t: calls.append((d, t)))
    features = model.network.features(model.normalize(images)).flatten(2)
    live = int((features.amax(2) > features.amin(2)).sum())
    assert calls[-1] == (live, live) and [d for d, _ in calls[:-1]] == list(range(3, live, 3))


def test_the_callback_is_gone_after_a_method_raises(model, batch) -> None:
    class Fails(xaibench.Explainer):
        def attribute(self, images, targets):
            self.report_progress(1, 2)
            raise RuntimeError("out of memory")

    explainer, calls = Fails(model), []
    with pytest.raises(RuntimeError):
        explainer.explain(*batch, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(1, 2)] and explainer._progress is None
    explainer.report_progress(2, 2)  # no callback: nothing happens
    assert calls == [(1, 2)]


def test_progress_text_gives_passes_rate_and_time_left() -> None:
    assert clock_text(564) == "9:24" and clock_text(3725) == "1:02:05" and clock_text(0.4) == "0:00"
    assert progress_text("scorecam", 1240, 21120, 1240 / 35.2) == "scorecam: 1,240/21,120 passes, 35.2/s, 9:25 left"
    assert progress_text("rise", 0, 8000, 0.0) == "rise: 0/8,000 passes"


class _Bar:
    def __init__(self) -> None:
        self.shown: list[str] = []

    def set_postfix_str(self, text: str) -> None:
        self.shown.append(text)


def test_pass_progress_redraws_at_most_twice_a_second_and_always_at_the_end() -> None:
    now = [100.0]
    bar = _Bar()
    progress = PassProgress(bar, "rise", clock=lambda: now[0])
    for done in range(1, 11):
        now[0] += 0.2
        progress(done * 10, 100)
    # drawn at 0.2 s, 0.8 s (0.6 after), 1.4 s, and at the end (2.0 s)
    assert bar.shown == [
        "rise: 10/100 passes, 50/s, 0:02 left", "rise: 40/100 passes, 50/s, 0:01 left",
        "rise: 70/100 passes, 50/s, 0:01 left", "rise: 100/100 passes, 50/s, 0:00 left",
    ]


def test_a_run_s_bar_shows_a_long_method_s_passes_within_the_batch(tmp_path, capsys) -> None:
    model = tiny_model()
    g = torch.Generator().manual_seed(0)
    data = [xaibench.data.Sample(f"s{i}", torch.rand(3, 16, 16, generator=g), i % 5, torch.tensor([[2.0, 2, 9, 9]]))
            for i in range(4)]
    rise = xaibench.create_explainer("rise", model, n_masks=40, batch_size=20)
    evaluate(model, data, [rise], batch_size=4, progress=True)
    err = capsys.readouterr().err
    assert re.search(r"rise: 160/160 passes, [0-9.e+]+/s, 0:00 left", err), err[-500:]
