"""The metric pool: jobs on a worker thread, results in order; in a run, the same rows as in turn."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch
from run_folder_faults import same_tables

import xaibench
from xaibench.data import Sample
from xaibench.errors import UnreadableImageError, XaibenchError
from xaibench.harness import evaluate
from xaibench.metric_pool import MetricPool


def test_results_come_in_the_order_of_the_jobs_and_errors_in_their_turn() -> None:
    release = threading.Event()
    with MetricPool(threads=1, limit=3) as pool:
        pool.submit(lambda: (release.wait(10), "first")[1])
        pool.submit(lambda: "second")
        assert list(pool.ready()) == []  # the first is not done: nothing, not the second before it
        release.set()
        pool.submit(lambda: 1 / 0)
        pool.submit(lambda: "fourth")
        results = pool.drain()
        assert [next(results), next(results)] == ["first", "second"]
        with pytest.raises(ZeroDivisionError):
            next(results)
        assert list(pool.drain()) == []  # after an error, the jobs after it are dropped


def test_past_the_limit_the_oldest_job_is_waited_for() -> None:
    with MetricPool(threads=1, limit=1) as pool:
        release = threading.Event()
        pool.submit(lambda: (release.wait(10), "slow")[1])
        pool.submit(lambda: "next")
        threading.Timer(0.05, release.set).start()
        assert next(pool.ready()) == "slow"  # two jobs, limit 1: waits for the oldest (not done when asked)


def test_without_a_thread_jobs_run_at_once_in_the_caller_s_thread() -> None:
    seen = []
    with MetricPool(threads=0, limit=2) as pool:
        pool.submit(lambda: seen.append(threading.current_thread()) or "done")
        assert seen == [threading.current_thread()] and list(pool.ready()) == ["done"]


def _data(n: int) -> list[Sample]:
    g = torch.Generator().manual_seed(4)
    return [Sample(f"s{i}", torch.rand(3, 16, 16, generator=g), i % 5, torch.tensor([[1.0, 2, 9, 11]])) for i in range(n)]


class _Where(xaibench.Metric):
    """Records the thread that scores it; ``passes_per_image`` says whether it runs the network."""

    columns: dict[str, str] = {}
    threads: list[str] = []

    def score(self, batch):
        type(self).threads.append(threading.current_thread().name)
        return {next(iter(self.columns)): np.zeros(len(batch))}


def test_in_a_run_the_metrics_that_run_no_network_are_scored_on_the_worker_thread(model) -> None:
    cpu, network = _Where(), _Where()
    cpu.name, cpu.columns = "cpu", {"cpu": "scalar"}
    network.name, network.columns, network.passes_per_image = "net", {"net": "scalar"}, 1
    _Where.threads = []
    evaluate(model, _data(4), ["center"], metrics=[network, cpu], batch_size=2)
    assert [t.startswith("xaibench-metrics") for t in _Where.threads] == [False, True, False, True]
    _Where.threads = []
    evaluate(model, _data(4), ["center"], metrics=[network, cpu], batch_size=2, workers=0)
    assert _Where.threads == [threading.current_thread().name] * 4


def test_a_run_with_the_pool_writes_the_rows_a_run_without_it_writes(model, tmp_path) -> None:
    metrics = ["top1_cls", "maxboxacc_v2", "pxap", "pointing", "energy_pointing", "mean_iou", "average_drop"]
    methods = ["cam", "gradcam", "center", "random"]
    pooled = evaluate(model, _data(9), methods, metrics=metrics, batch_size=4, out=tmp_path / "pool")
    alone = evaluate(model, _data(9), methods, metrics=metrics, batch_size=4, out=tmp_path / "alone", workers=0)
    same_tables(tmp_path / "pool", tmp_path / "alone")
    assert pooled.method.tolist() == alone.method.tolist()


class _Gaps(list):
    """Samples of which images 1, 2 and 3 cannot be read: in batches of 2, half the first and all the second."""

    def __getitem__(self, i):
        if i in (1, 2, 3):
            raise UnreadableImageError(f"cannot read image s{i}.jpg: truncated data")
        return super().__getitem__(i)


class _Slow(xaibench.Metric):
    """Scored on the pool, slowly: the batches after it are read before its results come back."""

    name, columns = "slow", {"slow": "scalar"}

    def score(self, batch):
        time.sleep(0.05)
        return {"slow": np.zeros(len(batch))}


def test_a_batch_with_nothing_to_score_is_written_after_the_batches_before_it(model, tmp_path) -> None:
    for workers, out in ((None, "pool"), (0, "alone")):
        evaluate(model, _Gaps(_data(6)), ["center", "random"], metrics=[_Slow()], batch_size=2, out=tmp_path / out,
                 workers=workers)
    same_tables(tmp_path / "pool", tmp_path / "alone")  # the skipped images' part included, in its place


def test_several_metric_threads_write_the_rows_one_thread_writes(model, tmp_path, monkeypatch) -> None:
    """A machine with cores to spare scores several (batch, method)s at once; the parts are the same."""
    metrics = ["top1_cls", "maxboxacc_v2", "pointing", "mean_iou"]
    methods = ["cam", "gradcam", "center", "random"]
    evaluate(model, _data(9), methods, metrics=metrics, batch_size=2, out=tmp_path / "one", workers=0)
    monkeypatch.setattr(xaibench.harness, "default_threads", lambda: 3)
    seen = set()
    score = xaibench.harness._score

    def recorded(*args):
        seen.add(threading.current_thread().name)
        return score(*args)

    monkeypatch.setattr(xaibench.harness, "_score", recorded)
    evaluate(model, _data(9), methods, metrics=metrics, batch_size=2, out=tmp_path / "three")
    same_tables(tmp_path / "three", tmp_path / "one")
    assert {name for name in seen if name.startswith("xaibench-metrics")}  # scored on the pool's threads


def test_a_metric_that_fails_on_the_worker_thread_keeps_the_rows_before_it(model, tmp_path) -> None:
    class Fails(xaibench.Metric):
        name, columns = "fails", {"fails": "scalar"}
        calls = 0

        def score(self, batch):
            type(self).calls += 1
            if type(self).calls == 3:  # the first method of the second batch
                raise RuntimeError("no contour")
            return {"fails": np.zeros(len(batch))}

    with pytest.raises(XaibenchError, match="metric 'fails' failed on the maps of method 'center' for images s2 ... s3"):
        evaluate(model, _data(6), ["center", "random"], metrics=[Fails()], batch_size=2, out=tmp_path)
    rows = xaibench.harness.read_per_image(tmp_path, [Fails()])
    # the jobs before the failing one: the first batch (those after it are dropped, however far the run got)
    assert list(zip(rows.method, rows.image_id)) == [("center", "s0"), ("center", "s1"), ("random", "s0"), ("random", "s1")]
