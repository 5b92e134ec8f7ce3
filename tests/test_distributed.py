"""A run split over processes by torchrun (xaibench/distributed.py): real ranks on the gloo backend,
started by torchrun itself, write one run folder whose per-image rows and summary are a single
process's; a rank killed half-way leaves a folder that one process finishes; two torchrun invocations
with ``--nnodes 2`` and a localhost rendezvous make one run; every option of ``xaibench run`` passes
through torchrun's own parser."""

from __future__ import annotations

import contextlib
import glob
import io
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

import xaibench
from conftest import SLOW
from xaibench import harness
from xaibench.cli import build_parser, main
from xaibench.distributed import Share, current_share, local_cores, rank_device
from xaibench.errors import XaibenchError
from xaibench.harness import ROW_KEYS, read_per_image
from xaibench.run_folder import PER_IMAGE, atomic_write_new

README = Path(__file__).resolve().parents[1] / "README.md"


def _readme_torchrun_line() -> list[str]:
    lines = [line.strip() for line in README.read_text().splitlines() if line.strip().startswith("torchrun --standalone")]
    assert len(lines) == 1, lines
    return shlex.split(lines[0])


#: The README's run (``xaibench run ...`` as it passes through torchrun): 3 methods, 64 images in
#: batches of 4, so 8 batches a rank: room to land a kill half-way.
_README_LINE = _readme_torchrun_line()
README_RUN = _README_LINE[_README_LINE.index("xaibench") + 1:]
N = int(README_RUN[README_RUN.index("--num-images") + 1])


def _torchrun(*argv: str) -> list[str]:
    """torchrun's command line: the ``torchrun`` script where it is installed, else the module it runs."""
    script = shutil.which("torchrun")
    return [script, *argv] if script else [sys.executable, "-m", "torch.distributed.run", *argv]


def _environment() -> dict[str, str]:
    """This process's environment, without a torchrun of its own around it."""
    skip = {"RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"}
    return {k: v for k, v in os.environ.items() if k not in skip}


def _run_args(out: Path, *extra: str, report: bool = False) -> list[str]:
    """The README's run into ``out`` (without its report unless asked)."""
    argv = list(README_RUN)
    argv[argv.index("--out") + 1] = str(out)
    return [*argv, *([] if report else ["--no-report"]), *extra]


def _sorted_rows(out: Path) -> pd.DataFrame:
    """The per-image rows, in (model, index, method) order: the order in which several processes' parts
    are read depends on which finished first; the rows and their values do not."""
    return read_per_image(out).sort_values(list(ROW_KEYS)).reset_index(drop=True)


def assert_same_run(out: Path, reference: Path) -> None:
    pd.testing.assert_frame_equal(_sorted_rows(out), _sorted_rows(reference))
    assert (out / "summary.csv").read_bytes() == (reference / "summary.csv").read_bytes()
    assert (out / "box_accuracy_curves.csv").read_bytes() == (reference / "box_accuracy_curves.csv").read_bytes()


@pytest.fixture(scope="module")
def one_process(tmp_path_factory) -> Path:
    """The README's run in one process (this one), with one torch thread, as each of torchrun's ranks
    has; without the report, which rank 0 draws from the same folder."""
    import torch

    out = tmp_path_factory.mktemp("one") / "run"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(_run_args(out)) == 0
    finally:
        torch.set_num_threads(threads)
    return out


# ------------------------------------------------------------------ the share of batches, in one process


def test_shares_own_every_batch_once() -> None:
    for world in (1, 2, 3, 5):
        owners = [[r for r in range(world) if Share(r, world, r).owns(k)] for k in range(17)]
        assert all(len(o) == 1 for o in owners)
    assert [k for k in range(7) if Share(1, 3, 1).owns(k)] == [1, 4]


def test_the_environment_torchrun_sets_gives_the_share(monkeypatch) -> None:
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    assert current_share() is None
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert current_share() is None  # torchrun with one process: a run of its own
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert current_share() == Share(3, 4, 1) and str(current_share()) == "rank 3 of 4"
    assert rank_device("cuda", current_share()) == "cuda:1" and rank_device("cuda:0", current_share()) == "cuda:0"
    assert rank_device("cuda", None) == "cuda" and rank_device("cpu", current_share()) == "cpu"
    monkeypatch.setenv("RANK", "4")
    with pytest.raises(XaibenchError, match="RANK is '4'"):
        current_share()
    monkeypatch.setenv("RANK", "x")
    with pytest.raises(XaibenchError, match="RANK is 'x', not a whole number: start the run with torchrun"):
        current_share()


def test_the_cores_are_shared_among_a_machines_ranks(monkeypatch) -> None:
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    alone = local_cores()
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(alone * 4))
    assert local_cores() == 1
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    assert local_cores() == alone


def test_writers_that_race_for_part_names_each_take_their_own(tmp_path) -> None:
    """Eight threads each write 25 files under the first free number: 200 files, none replaced."""
    (tmp_path / "part-00000001.parquet").write_bytes(b"there before")

    def writer(k: int) -> None:
        for j in range(25):
            names = (tmp_path / f"part-{number:08d}.parquet" for number in range(1, 10_000))
            atomic_write_new(names, lambda file: file.write(f"{k} {j}".encode()))

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    contents = sorted(p.read_bytes() for p in tmp_path.glob("part-*.parquet"))
    assert len(contents) == 201 and b"there before" in contents
    assert sorted(c for c in contents if c != b"there before") == sorted(f"{k} {j}".encode() for k in range(8) for j in range(25))
    assert not list(tmp_path.glob(".*"))  # no temporary file left


def test_shares_evaluated_into_one_folder_give_the_rows_of_one_evaluation(tmp_path) -> None:
    """Three shares of the batches, evaluated in turn into one folder, hold the rows (and the
    thumbnails) of one evaluation; each share computes only its own batches."""
    model = xaibench.load_model("builtin")
    data = xaibench.load_dataset("builtin", image_size=model.input_size, size=22, seed=0)
    methods = ["cam", "center"]
    whole = tmp_path / "whole"
    harness.evaluate(model, data, methods, batch_size=4, out=whole, read_back=False, workers=0)
    shared = tmp_path / "shared"
    harness.RunTables.open(shared, harness.build_metrics(None))
    for rank in (2, 0, 1):
        harness.evaluate(model, data, methods, batch_size=4, out=shared, read_back=False, workers=0,
                         share=Share(rank, 3, rank))
        timings = pd.read_parquet(shared / "timings")
        assert set(timings.batch) <= {0, 4, 8, 12, 16, 20}
    assert sorted(pd.read_parquet(shared / "timings").batch.unique()) == [0, 4, 8, 12, 16, 20]
    pd.testing.assert_frame_equal(_sorted_rows(shared), _sorted_rows(whole))
    for table in ("images", "maps"):
        ours, theirs = (pd.read_parquet(folder / table) for folder in (shared, whole))
        keys = [c for c in ("model", "index", "method") if c in ours]
        pd.testing.assert_frame_equal(ours.sort_values(keys).reset_index(drop=True),
                                      theirs.sort_values(keys).reset_index(drop=True))


# ------------------------------------------------------------------ torchrun's parser


def test_commands_other_than_run_refuse_to_be_split(monkeypatch, capsys, tmp_path) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("RANK", "0")
    assert main(["summarize", str(tmp_path)]) == 2
    assert capsys.readouterr().err == ("xaibench: error: rank 0 of 2: xaibench summarize runs in one process: start it "
                                       "without torchrun (xaibench run is the command that splits over processes)\n")
    monkeypatch.setenv("RANK", "1")
    assert main(["sanity", "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err == ""  # said once, by rank 0


def test_every_option_of_xaibench_run_passes_through_torchrun() -> None:
    """torchrun's parser matches abbreviations of its own options before it hands the rest to the
    module: ``--n`` is refused there (it could be --nnodes, --nproc-per-node, ...), so ``--num-images``
    is its other spelling, which passes, like every other option of ``xaibench run``."""
    from torch.distributed.run import get_args_parser

    run = build_parser()._subparsers._group_actions[0].choices["run"]
    refused = []
    for option in [s for action in run._actions for s in action.option_strings]:
        argv = ["--nproc-per-node", "2", "-m", "xaibench", "run", option, "1"]
        try:
            with contextlib.redirect_stderr(io.StringIO()):
                parsed = get_args_parser().parse_args(argv)
        except SystemExit:
            refused.append(option)
            continue
        assert parsed.training_script_args == ["run", option, "1"], option
    assert refused == ["--n"]
    assert build_parser().parse_args(["run", "--num-images", "7"]).n == 7
    assert build_parser().parse_args(["run", "--n", "7"]).n == 7  # the old spelling, outside torchrun


# ------------------------------------------------------------------ real ranks


def test_the_readmes_torchrun_line_gives_the_rows_and_summary_of_one_process(one_process, tmp_path) -> None:
    """The README's command as written: two ranks on gloo, against the same run in one process."""
    argv = _readme_torchrun_line()
    out = tmp_path / argv[argv.index("--out") + 1]
    done = subprocess.run(_torchrun(*argv[1:]), cwd=tmp_path, env=_environment(), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("xaibench: wrote") == 1  # rank 0 tells, the other rank is quiet
    assert (out / "report.html").is_file() and (out / "overlays.png").is_file()
    assert_same_run(out, one_process)
    timings = pd.read_parquet(out / "timings")
    assert not timings.duplicated(["batch", "method"]).any() and len(timings) == len(pd.read_parquet(one_process / "timings"))


def _children(pid: int) -> list[int]:
    return [int(c) for task in glob.glob(f"/proc/{pid}/task/*/children") for c in Path(task).read_text().split()]


def _rank_of(pid: int) -> int | None:
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    ranks = [int(v.split(b"=", 1)[1]) for v in environ if v.startswith(b"RANK=")]
    return ranks[0] if ranks else None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the ranks in /proc")
def test_a_rank_killed_half_way_stops_the_run_and_one_process_finishes_it(one_process, tmp_path) -> None:
    out = tmp_path / "run"
    command = _torchrun("--standalone", "--nproc-per-node", "2", "-m", "xaibench", *_run_args(out))
    process = subprocess.Popen(command, env=_environment(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while len(list((out / PER_IMAGE).glob("part-*.parquet"))) < 2:
            assert process.poll() is None, "the run ended before a rank could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.005)
        ranks = {_rank_of(pid): pid for pid in _children(process.pid)}
        os.kill(ranks[1], signal.SIGKILL)
        _, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode != 0
    assert f"continue with --resume --out {out}" in err  # rank 0, stopped by torchrun, says how to go on
    rows = len(read_per_image(out))
    assert 0 < rows < len(read_per_image(one_process)), f"the kill did not land half-way ({rows} rows)"
    assert not (out / "summary.csv").exists()
    assert main([*_run_args(out), "--resume"]) == 0  # one process, another number than two
    assert_same_run(out, one_process)


def test_a_failing_rank_is_named_with_its_cause(tmp_path) -> None:
    """A folder that holds another run: rank 0 refuses it, naming itself; torchrun stops the other rank."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text("{}")  # what a run writes first
    command = _torchrun("--standalone", "--nproc-per-node", "2", "-m", "xaibench", *_run_args(out))
    done = subprocess.run(command, env=_environment(), capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    errors = [line for line in done.stderr.splitlines() if line.startswith("xaibench: error:")]
    assert len(errors) == 1 and errors[0].startswith("xaibench: error: rank 0 of 2: ") and "--resume" in errors[0], errors


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.skipif(not SLOW, reason="set XAIBENCH_SLOW=1 (four processes: about 12 s on two CPU cores)")
def test_two_torchruns_with_nnodes_2_and_a_localhost_rendezvous_make_one_run(one_process, tmp_path) -> None:
    """Two "machines" (two torchrun invocations, one rank each) meet at a c10d rendezvous on localhost."""
    out = tmp_path / "run"
    endpoint = f"127.0.0.1:{_free_port()}"
    nodes = [
        subprocess.Popen(
            _torchrun("--nnodes", "2", "--nproc-per-node", "1", "--rdzv-backend", "c10d", "--rdzv-endpoint", endpoint,
                      "--rdzv-id", "xaibench-test", "-m", "xaibench", *_run_args(out)),
            env=_environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for _ in range(2)
    ]
    outputs = [node.communicate(timeout=300) for node in nodes]
    for node, (_, err) in zip(nodes, outputs):
        assert node.returncode == 0, err[-3000:]
    assert sum(stdout.count("xaibench: wrote") for stdout, _ in outputs) == 1
    assert_same_run(out, one_process)
    assert re.search(rf"\| cam \| {N} \|", (out / "summary.md").read_text())
