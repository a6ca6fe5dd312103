"""``--engine ray``: the corpus commands on a local Ray cluster give the outputs of the local engine, resume exactly.

Most tests run the commands in this process, connected to one module-scoped local Ray instance (2 CPUs); one
subprocess starts its own Ray (and is interrupted with Ctrl-C), another connects with ``--address`` (and is
killed). Limits stay tiny: the tiny random BERT saved to a folder, a few fixture pairs.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from bilrp._cli_support import OneLineParser
from bilrp.cli import build_parser, main
from bilrp.corpus_runs.ray_engine import ray_available
from bilrp.corpus_runs.registry import COMMAND_UNITS, unit_class
from bilrp.corpus_runs.work import WorkUnit

ENV = {"OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "MPLBACKEND": "Agg", "HF_HUB_OFFLINE": "1"}


# ---------------------------------------------------------------------------------------------- without Ray
def test_every_corpus_command_takes_the_engine_options_and_names_its_unit():
    parser = build_parser()
    for command, target in COMMAND_UNITS.items():
        assert issubclass(unit_class(command), WorkUnit), target
        args = parser.parse_args([*command, *(["docs.txt"] if command == ("index",) else []), "--out", "x"])
        assert (args.engine, args.address, args.workers) == ("local", None, None), command


@pytest.mark.parametrize(
    "argv, message",
    [
        (["evaluate", "perturbation", "--workers", "2"], "--workers choose how Ray runs: add --engine ray"),
        (["analyze", "pos", "--out", "OUT", "--address", "auto"], "--address choose how Ray runs"),
        (["index", "DOCS", "--out", "OUT", "--address", "auto", "--workers", "1"], "--address and --workers"),
    ],
)
def test_ray_options_without_the_ray_engine_are_one_line_errors(argv, message, tmp_path, capsys):
    argv = [str(tmp_path / a) if a in ("OUT", "DOCS") else a for a in argv]
    (tmp_path / "DOCS").write_text("a document\n")
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err and "Traceback" not in err


def test_a_missing_ray_extra_is_one_line_before_any_model_loads(monkeypatch, tmp_path, capsys):
    import bilrp.corpus_runs.ray_engine as ray_engine

    monkeypatch.setattr(ray_engine, "ray_available", lambda: False)
    assert main(["evaluate", "sts", "--engine", "ray", "--model", "no/such-model", "--out", str(tmp_path)]) == 2
    assert "install bilrp[ray]" in capsys.readouterr().err
    assert isinstance(build_parser(), OneLineParser)


# ---------------------------------------------------------------------------------------------- helpers
needs_ray = pytest.mark.skipif(
    not ray_available(), reason="the Ray engine needs the ray extra (Ray Data, pyarrow): pip install -e '.[ray]'"
)


@pytest.fixture(scope="module")
def cluster():
    """One local Ray instance for the module; the commands run here reuse this connection."""
    import ray

    for name, value in ENV.items():
        os.environ.setdefault(name, value)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def files(folder: Path, skip=("runs", "shards")) -> dict[str, bytes]:
    """Every output file under ``folder`` (relative name -> bytes), leaving out the engines' own stores."""
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.relative_to(folder).parts[0] not in skip
    }


def both_engines(tmp_path: Path, capsys, *argv: str, ray_args=("--workers", "2")) -> tuple[Path, Path, str]:
    """Run ``bilrp ARGV --out DIR`` locally and on Ray; the two output folders and Ray's stderr."""
    local, remote = tmp_path / "local", tmp_path / "ray"
    assert main([*argv, "--out", str(local)]) == 0
    capsys.readouterr()
    assert main([*argv, "--out", str(remote), "--engine", "ray", *ray_args]) == 0
    return local, remote, capsys.readouterr().err


def pair_indices(folder: Path) -> list[int]:
    """The record keys of every Parquet shard of a folder, in file order (duplicates kept)."""
    from bilrp.corpus_runs.shards import read_shard

    return [row.key for part in sorted(folder.glob("part-*.parquet")) for row in read_shard(part)]


def shard_contents(file: Path) -> tuple[dict, dict]:
    """The metadata and the tensors (as bytes) of a safetensors file."""
    from safetensors import safe_open

    with safe_open(str(file), framework="pt") as handle:
        tensors = {key: handle.get_tensor(key).numpy().tobytes() for key in handle.keys()}  # noqa: SIM118
        return handle.metadata(), tensors


def run_folder(runs: Path) -> Path:
    (folder,) = [p for p in runs.iterdir() if p.is_dir()]
    return folder


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Ray gives each CPU actor one thread (``OMP_NUM_THREADS=1``); the driver and the commands it starts compute
    with one thread too, so both engines run the same float operations in the same order and their outputs agree
    byte for byte. (With other thread counts they agree to float rounding: docs/scaling.md.)"""
    import torch

    threads, variable = torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    if variable is None:
        os.environ.pop("OMP_NUM_THREADS", None)
    else:
        os.environ["OMP_NUM_THREADS"] = variable


# ---------------------------------------------------------------------------------------------- equality
@needs_ray
def test_a_run_started_by_the_command_itself_equals_local_and_shuts_ray_down(model_dir, data_dir, tmp_path):
    """No ``--address`` and no connection yet (this runs before the module's cluster starts): the command
    starts a local Ray and shuts it down at the end."""
    import ray

    assert not ray.is_initialized(), "runs first: the tests below connect this process to the module's cluster"
    argv = ["evaluate", "conservation", "--dataset", "biosses", "--data-dir", str(data_dir), "--limit", "3"]
    argv += ["--model", str(model_dir), "--no-progress", "--out"]
    assert main([*argv, str(tmp_path / "ray"), "--engine", "ray"]) == 0
    assert not ray.is_initialized()
    assert main([*argv, str(tmp_path / "local")]) == 0
    assert files(tmp_path / "local") == files(tmp_path / "ray")


@needs_ray
def test_perturbation_on_ray_equals_local(cluster, model_dir, data_dir, tmp_path, capsys):
    argv = ["evaluate", "perturbation", "--dataset", "biosses", "--data-dir", str(data_dir), "--limit", "5"]
    argv += ["--model", str(model_dir), "--methods", "random", "bilrp", "hxp", "--no-progress"]
    local, remote, err = both_engines(tmp_path, capsys, *argv)
    assert files(local) == files(remote) and "summary.json" in files(local)
    assert "ray: 1 shard(s) computed, 0 read back" in err
    assert sorted(pair_indices(remote / "shards")) == list(range(5))


@needs_ray
def test_pos_on_ray_equals_local_with_several_workers(cluster, model_dir, data_dir, tmp_path, capsys):
    argv = ["analyze", "pos", "--dataset", "stsb", "--data-dir", str(data_dir), "--limit", "5", "--shard-size", "2"]
    local, remote, err = both_engines(tmp_path, capsys, *argv, "--model", str(model_dir), "--no-progress")
    assert files(local) == files(remote) and "pos.json" in files(local)
    assert sorted(pair_indices(run_folder(remote / "runs"))) == list(range(5))
    assert "ray: 3 shard(s) computed, 0 read back" in err


@needs_ray
def test_index_on_ray_equals_local(cluster, model_dir, tmp_path, capsys):
    docs = tmp_path / "docs.txt"
    docs.write_text("".join(f"Document number {n} talks about {'cats dogs birds'.split()[n % 3]}.\n" for n in range(7)))
    argv = ["index", str(docs), "--model", str(model_dir), "--shard-size", "3", "--no-progress"]
    local, remote, err = both_engines(tmp_path, capsys, *argv)
    assert sorted(files(local)) == sorted(files(remote)) and len(files(local)) == 4  # manifest, 3 shards, no parts
    assert files(local)["manifest.json"] == files(remote)["manifest.json"]
    for name in sorted(files(local))[1:]:  # safetensors orders its metadata keys at random: compare the contents
        assert shard_contents(local / name) == shard_contents(remote / name), name
    assert "ray: 3 shard(s) computed" in err


@needs_ray
def test_sts_and_conservation_on_ray_equal_local(cluster, model_dir, data_dir, tmp_path, capsys):
    for command in ("sts", "conservation"):
        argv = ["evaluate", command, "--dataset", "stsb", "--data-dir", str(data_dir), "--limit", "4"]
        local, remote, _ = both_engines(tmp_path / command, capsys, *argv, "--model", str(model_dir), "--no-progress")
        assert files(local) == files(remote) and "summary.json" in files(local), command


@needs_ray
def test_multilingual_and_quantiles_on_ray_equal_local(cluster, model_dir, data_dir, tmp_path, capsys):
    common = ["--data-dir", str(data_dir), "--limit", "2", "--model", str(model_dir), "--no-progress"]
    for argv in (["analyze", "multilingual", "--k", "2"], ["analyze", "quantiles", "--dataset", "stsb", "--k", "2"]):
        local, remote, _ = both_engines(tmp_path / argv[1], capsys, *argv, *common, ray_args=())
        assert files(local) == files(remote) and len(files(local)) > 2, argv


# ---------------------------------------------------------------------------------------------- failures
@needs_ray
def test_an_empty_text_is_reported_with_its_id_and_the_run_goes_on(cluster, model_dir, data_dir, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(Path(data_dir) / "stsb", data / "stsb")
    test = data / "stsb" / "sts-test.csv"
    lines = test.read_text().splitlines()
    fields = lines[1].split("\t")
    lines[1] = "\t".join([*fields[:6], "", *fields[7:]])
    test.write_text("\n".join(lines) + "\n")
    for command in (["analyze", "pos", "--dataset", "stsb"], ["evaluate", "perturbation", "--methods", "random"]):
        argv = [*command, "--data-dir", str(data), "--limit", "4", "--model", str(model_dir), "--no-progress"]
        local, remote, err = both_engines(tmp_path / command[1], capsys, *argv, ray_args=())
        assert files(local) == files(remote), command
        failures = json.loads((remote / "failures.json").read_text())
        assert [(f["id"], f["error"]) for f in failures] == [("pair-1", "text b is empty ('')")], command
        assert "pair-1" in err and "text b is empty" in err


# ---------------------------------------------------------------------------------------------- resumption
def _children() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(stat.parent.name))
    return children


def ray_actor_pids(root: int) -> list[int]:
    """The Ray Data actors among the descendants of process ``root`` (their title names MapWorker)."""
    children, found, stack = _children(), [], [root]
    while stack:
        for child in children.get(stack.pop(), []):
            stack.append(child)
            try:
                if b"MapWorker" in Path(f"/proc/{child}/cmdline").read_bytes():
                    found.append(child)
            except OSError:
                continue
    return found


def wait_for(predicate, timeout=240.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.05)
    return False


POS = ["analyze", "pos", "--dataset", "stsb", "--limit", "10", "--shard-size", "1", "--method", "ij", "--no-progress"]


@pytest.fixture(scope="module")
def pos_reference(model_dir, data_dir, tmp_path_factory):
    """The outputs of the resumption tests' command with the local engine, uninterrupted."""
    out = tmp_path_factory.mktemp("pos-local")
    assert main([*POS, "--data-dir", str(data_dir), "--model", str(model_dir), "--out", str(out)]) == 0
    return files(out)


@needs_ray
def test_a_killed_worker_is_restarted_and_the_output_is_complete(
    cluster, model_dir, data_dir, tmp_path, capsys, pos_reference
):
    argv = [*POS, "--data-dir", str(data_dir), "--model", str(model_dir)]
    killed = []

    def kill_one_worker():
        runs = tmp_path / "ray" / "runs"
        if wait_for(lambda: runs.is_dir() and any(runs.rglob("part-*.parquet"))):
            pids = ray_actor_pids(os.getpid())
            if pids:
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])

    killer = threading.Thread(target=kill_one_worker)
    killer.start()
    assert main([*argv, "--out", str(tmp_path / "ray"), "--engine", "ray", "--workers", "1"]) == 0
    killer.join()
    err = capsys.readouterr().err
    assert killed, "no Ray worker found to kill"
    assert "1 worker(s) died and were restarted by Ray" in err
    assert sorted(pair_indices(run_folder(tmp_path / "ray" / "runs"))) == list(range(10))  # complete, no duplicate
    assert files(tmp_path / "ray") == pos_reference


def count_parts(runs: Path) -> int:
    return len(list(runs.rglob("part-*.parquet"))) if runs.is_dir() else 0


def interrupted(argv: list[str], runs: Path, sig: int, already: int) -> int:
    """Run ``bilrp ARGV`` in a subprocess, send it ``sig`` once ``runs`` holds more than ``already`` shards."""
    code = "import sys; from bilrp.cli import main; sys.exit(main(sys.argv[1:]))"
    process = subprocess.Popen([sys.executable, "-c", code, *argv], env={**os.environ, **ENV},
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert wait_for(lambda: count_parts(runs) > already or process.poll() is not None)
        process.send_signal(sig)
        _, err = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode != 0, err[-2000:]  # interrupted, not finished
    return count_parts(runs)


@needs_ray
def test_an_interrupted_driver_resumes_with_the_missing_shards_only(
    cluster, model_dir, data_dir, tmp_path, capsys, pos_reference
):
    argv = [*POS, "--data-dir", str(data_dir), "--model", str(model_dir), "--out", str(tmp_path / "ray")]
    runs = tmp_path / "ray" / "runs"
    ctrl_c = interrupted([*argv, "--engine", "ray"], runs, signal.SIGINT, 0)  # its own local Ray, then Ctrl-C
    killed = interrupted([*argv, "--engine", "ray", "--address", cluster], runs, signal.SIGKILL, ctrl_c)
    assert 0 < ctrl_c < killed < 10, (ctrl_c, killed)
    capsys.readouterr()
    assert main([*argv, "--engine", "ray"]) == 0
    assert f"ray: {10 - killed} shard(s) computed, {killed} read back" in capsys.readouterr().err
    assert sorted(pair_indices(run_folder(runs))) == list(range(10))  # nothing lost, nothing twice
    assert files(tmp_path / "ray") == pos_reference
