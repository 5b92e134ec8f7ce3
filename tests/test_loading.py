"""Reading a run's spans: in DataLoader workers or not, the same samples in the same order."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import SHARED_IMAGENET
from run_folder_faults import same_tables

import xaibench
from xaibench import loading
from xaibench.data import Sample
from xaibench.data.sample import sample_digest
from xaibench.errors import UnreadableImageError, XaibenchError
from xaibench.harness import evaluate, read_per_image, read_skipped
from xaibench.loading import read_span, span_reader


def _sample(i: int) -> Sample:
    image = torch.full((3, 16, 16), 0.1)
    image[:, i % 12 : i % 12 + 4, (3 * i) % 12 : (3 * i) % 12 + 4] = 1.0
    return Sample(f"s{i}", image, i % 5, torch.tensor([[(3 * i) % 12, i % 12, (3 * i) % 12 + 3, i % 12 + 3]], dtype=torch.float32))


class _Data(list):
    """Samples with image 3 unreadable and, if asked, image ``broken`` raising another error; with
    ``readers``, each read writes the reading process's id to the file ``readers/INDEX``."""

    def __init__(self, n: int, broken: int | None = None, readers: Path | None = None) -> None:
        super().__init__(_sample(i) for i in range(n))
        self.broken, self.readers = broken, readers

    def __getitem__(self, i):
        if self.readers is not None:
            (self.readers / str(i)).write_text(str(os.getpid()))
        if i == 3:
            raise UnreadableImageError("cannot read image s3.jpg: truncated data")
        if i == self.broken:
            raise ValueError("bad annotation")
        return super().__getitem__(i)


@pytest.fixture
def always_workers(monkeypatch):
    """Workers start however fast the first span was read."""
    monkeypatch.setattr(loading, "WORKER_THRESHOLD_SECONDS", 0.0)


def _readers(folder: Path, n: int) -> list[int]:
    """The process that read each of the first ``n`` samples."""
    return [int((folder / str(i)).read_text()) for i in range(n)]


def test_read_span_stacks_the_readable_samples_and_says_why_the_others_were_skipped() -> None:
    data = _Data(6)
    read = read_span(data, range(2, 6))
    assert read.indices == [2, 4, 5] and read.batch.ids == ["s2", "s4", "s5"]
    assert read.unreadable == [(3, "cannot read image s3.jpg: truncated data")]
    assert read.digests == [sample_digest(data[i]) for i in (2, 4, 5)]
    assert read_span(data, [3]).batch is None


def test_workers_read_the_same_spans_in_the_same_order(always_workers, tmp_path) -> None:
    spans = [range(k, min(k + 3, 11)) for k in range(0, 11, 3)]
    (tmp_path / "alone").mkdir(), (tmp_path / "workers").mkdir()
    with span_reader(_Data(11, readers=tmp_path / "alone"), spans, workers=0) as reads:
        alone = list(reads)
    with span_reader(_Data(11, readers=tmp_path / "workers"), spans, workers=2) as reads:
        read = list(reads)
    assert [r.indices for r in read] == [r.indices for r in alone] == [[0, 1, 2], [4, 5], [6, 7, 8], [9, 10]]
    assert [r.unreadable for r in read] == [r.unreadable for r in alone] == [[], [(3, "cannot read image s3.jpg: truncated data")], [], []]
    assert all(torch.equal(a.batch.images, b.batch.images) and a.digests == b.digests for a, b in zip(read, alone))
    assert _readers(tmp_path / "alone", 11) == [os.getpid()] * 11
    workers = _readers(tmp_path / "workers", 11)
    assert workers[:3] == [os.getpid()] * 3  # the first span in the main process, the others in workers
    assert os.getpid() not in workers[3:] and len(set(workers[3:])) == 2
    assert not multiprocessing.active_children()  # and the workers are gone


def test_no_workers_when_reading_is_fast_or_one_span_is_left(tmp_path, monkeypatch) -> None:
    with span_reader(_Data(9, readers=tmp_path), [range(0, 3), range(3, 6), range(6, 9)], workers=2) as reads:
        assert len(list(reads)) == 3
    assert _readers(tmp_path, 9) == [os.getpid()] * 9  # in memory: far below the threshold
    monkeypatch.setattr(loading, "WORKER_THRESHOLD_SECONDS", 0.0)
    with span_reader(_Data(9, readers=tmp_path), [range(0, 9)], workers=2) as reads:
        assert len(list(reads)) == 1
    assert _readers(tmp_path, 9) == [os.getpid()] * 9


def test_workers_stop_when_the_caller_stops_early(always_workers) -> None:
    data = _Data(30)
    with pytest.raises(RuntimeError, match="the network failed"):
        with span_reader(data, [range(k, k + 3) for k in range(0, 30, 3)], workers=2) as reads:
            next(reads), next(reads)
            assert multiprocessing.active_children()
            raise RuntimeError("the network failed")
    assert not multiprocessing.active_children()


def test_a_run_with_workers_gives_the_same_rows_skips_the_same_images_and_stops_at_the_same_sample(always_workers, tmp_path, model) -> None:
    kwargs = dict(metrics=["top1_cls", "gt_known_loc", "pointing"], batch_size=3)
    alone = evaluate(model, _Data(11), ["cam", "center"], workers=0, out=tmp_path / "alone", **kwargs)
    read = evaluate(model, _Data(11), ["cam", "center"], workers=2, out=tmp_path / "workers", **kwargs)
    same_tables(tmp_path / "alone", tmp_path / "workers")
    pd.testing.assert_frame_equal(alone, read)
    assert read.attrs["skipped"] == ["3"] and read_skipped(tmp_path / "workers")["index"].tolist() == [3]
    with pytest.raises(XaibenchError, match=r"the data set failed on sample 7 \(ValueError: bad annotation\)"):
        evaluate(model, _Data(11, broken=7), ["cam"], workers=2, out=tmp_path / "broken", **kwargs)
    metrics = xaibench.harness.build_metrics(kwargs["metrics"])
    assert read_per_image(tmp_path / "broken", metrics)["index"].tolist() == [0, 1, 2, 4, 5]  # the batches before it kept
    assert not multiprocessing.active_children()


def test_the_built_in_data_set_renders_the_same_images_in_workers(always_workers) -> None:
    data = xaibench.load_dataset("builtin", image_size=(32, 32), size=12)
    spans = [range(k, k + 4) for k in range(0, 12, 4)]
    with span_reader(data, spans, workers=0) as reads:
        alone = [r.batch for r in reads]
    with span_reader(data, spans, workers=2) as reads:
        read = [r.batch for r in reads]
    for a, b in zip(alone, read):
        assert a.ids == b.ids and torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
        assert all(torch.equal(x, y) for x, y in zip(a.masks, b.masks))


def test_photos_decoded_in_workers_are_the_photos_decoded_alone(always_workers) -> None:
    if not SHARED_IMAGENET.is_dir():
        pytest.skip(f"shared ImageNet photos not found at {SHARED_IMAGENET}")
    data = xaibench.load_dataset(f"imagenet:{SHARED_IMAGENET}", image_size=(224, 224))
    spans = [range(k, k + 3) for k in range(0, 9, 3)]
    with span_reader(data, spans, workers=0) as reads:
        alone = list(reads)
    with span_reader(data, spans, workers=2) as reads:
        read = list(reads)
    for a, b in zip(alone, read):
        assert a.digests == b.digests and torch.equal(a.batch.images, b.batch.images)
        assert all(torch.equal(x.boxes, y.boxes) and x.size == y.size for x, y in zip(a.batch.originals, b.batch.originals))


def test_workers_must_not_be_negative() -> None:
    with pytest.raises(XaibenchError, match="workers must be 0 or more, got -1"):
        with span_reader(_Data(3), [range(3)], workers=-1):
            pass
