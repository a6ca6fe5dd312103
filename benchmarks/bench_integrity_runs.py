"""What the run checks cost when a corpus run resumes, as ratios measured in one run.

The checks (issue 22): the model's fingerprint (weights, tokenizer, pooling, head, ...; computed once per
process, then cached while the model's tensors are unchanged), the folder's record compared with it, every
shard line or row verified against its run and its check digest (and stamped when written), and the folder's
lock. Measured on the real all-MiniLM-L6-v2 and the first ``--pairs`` STSb test pairs (``$BILRP_DATA_DIR``,
else the fixture rows), with one torch thread:

- **fixed cost per run**: the fingerprint, the first time in a process and again (cached), and the lock;
- **cost per shard**: re-reading a complete run (nothing to compute) with the verification against the same
  re-read without it, the fingerprint being given in both (its value computed beforehand) and the lock left
  out (a fixed cost, above), for the analysis
  run folder of each engine (JSONL shards of the local engine, Parquet shards of the Ray engine's shard path,
  run here in this process) and for the evaluation store (Parquet, ``run.json``);
- **resumes as users run them**: ``bilrp analyze pos`` rerun in a fresh process on a complete run (start-up,
  model load, reading the run back, the POS analysis), and ``run_corpus`` resuming a run half done (computing
  the other half) in this process, each against everything the checks cost in it: the first fingerprint, the
  lock and the verification of the lines read (for the half-done run: half the lines verified and half
  stamped, counted as the verification of all of them). The checks' cost is summed from the parts measured
  above rather than taken as a difference of two resumes, which the noise of computing or starting a process
  would swamp.

Each time is the best of ``--repeats`` (the re-reads alternate with and without the checks).

Usage::

    python benchmarks/bench_integrity_runs.py --out benchmarks/results/integrity_runs.md
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENV = {"OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "MPLBACKEND": "Agg", "HF_HUB_OFFLINE": "1"}


def data_folder() -> tuple[Path, str]:
    folder = Path(os.environ.get("BILRP_DATA_DIR", ROOT.parent / "shared" / "data"))
    if (folder / "stsb" / "sts-test.csv").is_file():
        return folder, f"STSb test, full data ({folder})"
    fixture = ROOT / "tests" / "fixtures" / "data"
    return fixture, f"STSb test, the fixture rows only ({fixture})"


def best(call: Callable[[], object], repeats: int, before: Callable[[], object] = lambda: None) -> float:
    times = []
    for _ in range(repeats):
        before()
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return min(times)


@contextlib.contextmanager
def without_checks(fingerprint: dict[str, str]) -> Iterator[None]:
    """The fingerprint given (not computed), the line/row verification and the lock replaced by nothing."""
    import pyarrow.parquet as pq

    import bilrp.analysis.corpus as corpus
    import bilrp.analysis.run_files as run_files
    import bilrp.corpus_runs.shards as shards
    import bilrp.evaluation.runs as runs
    from bilrp.corpus_runs.work import Row

    def read_unchecked(file, run=None):
        columns = pq.read_table(file).to_pydict()
        return [Row(*v) for v in zip(*(columns[n] for n in ("key", "id", "digest", "data", "error")), strict=True)]

    @contextlib.contextmanager
    def no_lock(folder, purpose):
        yield folder

    patches = {
        (run_files, "model_fingerprint"): lambda model: dict(fingerprint),
        (run_files, "_check_line"): lambda *args: None,
        (run_files, "read_shard"): read_unchecked,
        (shards, "read_shard"): read_unchecked,
        (corpus, "folder_lock"): no_lock,
        (shards, "folder_lock"): no_lock,
        (runs, "model_identity"): lambda model: {"model": model.name, "fingerprint": dict(fingerprint)},
    }
    saved = {key: getattr(*key) for key in patches}
    for (module, name), value in patches.items():
        setattr(module, name, value)
    try:
        yield
    finally:
        for (module, name), value in saved.items():
            setattr(module, name, value)


@contextlib.contextmanager
def verification_only(fingerprint: dict[str, str]) -> Iterator[None]:
    """The fingerprint given (its value computed beforehand) and no lock: only the verification runs."""
    import bilrp.analysis.corpus as corpus
    import bilrp.analysis.run_files as run_files
    import bilrp.corpus_runs.shards as shards
    import bilrp.evaluation.runs as runs

    @contextlib.contextmanager
    def no_lock(folder, purpose):
        yield folder

    saved = run_files.model_fingerprint, runs.model_identity, corpus.folder_lock, shards.folder_lock
    run_files.model_fingerprint = lambda model: dict(fingerprint)
    runs.model_identity = lambda model: {"model": model.name, "fingerprint": dict(fingerprint)}
    corpus.folder_lock = shards.folder_lock = no_lock
    try:
        yield
    finally:
        run_files.model_fingerprint, runs.model_identity, corpus.folder_lock, shards.folder_lock = saved


def forget_fingerprints() -> None:
    """Empty the fingerprint's caches (weights, tokenizer), as in a new process."""
    from bilrp.models import fingerprint

    fingerprint._WEIGHTS.clear()
    fingerprint._fast_tokenizer_digest.cache_clear()


def fixed_costs(model, work: Path, repeats: int) -> dict[str, float]:
    from bilrp._integrity import folder_lock
    from bilrp.models import fingerprint

    def lock() -> None:
        with folder_lock(work / "locked", "measuring"):
            pass

    return {
        "fingerprint, first time in a process": best(
            lambda: fingerprint.model_fingerprint(model), repeats, forget_fingerprints
        ),
        "fingerprint, again (cached)": best(lambda: fingerprint.model_fingerprint(model), repeats),
        "lock (take and release)": best(lock, repeats),
    }


def per_shard(model, pairs, work: Path, repeats: int, fingerprint) -> dict[str, tuple[float, float]]:
    """Seconds (verified, not) of re-reading each kind of complete run, the fingerprint given, no lock."""
    import bilrp.analysis.corpus as corpus
    from bilrp.corpus_runs import RayOptions
    from bilrp.evaluation.runs import run_evaluation
    from bilrp.evaluation.units import EncodeTexts, text_records

    texts = sorted({t for p in pairs for t in (p.text_a, p.text_b)})
    calls = {
        "analysis, JSONL (local engine)": lambda: corpus.run_corpus(model, pairs, work / "jsonl", progress=False),
        "analysis, Parquet (Ray engine's shards)": lambda: corpus.run_corpus(
            model, pairs, work / "parquet", progress=False, ray=RayOptions(source=None)
        ),
        "evaluation store (Parquet)": lambda: run_evaluation(
            EncodeTexts(32), model, text_records(texts), shards=work / "store", shard_size=64
        ),
    }
    results = {}
    for name, call in calls.items():
        call()  # computes the run once
        times: dict[bool, list[float]] = {True: [], False: []}
        for _ in range(repeats):  # alternated, so that a slower stretch of the machine hits both
            for verified in (True, False):
                with verification_only(fingerprint) if verified else without_checks(fingerprint):
                    times[verified].append(best(call, 1))
        results[name] = (min(times[True]), min(times[False]))
    return results


def half_resume(model, pairs, work: Path, repeats: int) -> float:
    """Seconds of ``run_corpus`` resuming a JSONL run half done (computing the other half), checks included."""
    import bilrp.analysis.corpus as corpus

    corpus.run_corpus(model, pairs[: len(pairs) // 2], work / "half", progress=False)

    def prepare() -> None:
        shutil.rmtree(work / "resume", ignore_errors=True)
        shutil.copytree(work / "half", work / "resume")
        forget_fingerprints()

    return best(lambda: corpus.run_corpus(model, pairs, work / "resume", progress=False), repeats, prepare)


def fresh_process(data: Path, pairs: int, work: Path, repeats: int) -> float:
    """Seconds of ``bilrp analyze pos`` rerun in a fresh process on a complete run."""
    argv = ["analyze", "pos", "--dataset", "stsb", "--limit", str(pairs), "--data-dir", str(data)]
    argv += ["--out", str(work / "pos"), "--no-progress"]
    command = [sys.executable, "-m", "bilrp", *argv]
    env = {**os.environ, **ENV}
    subprocess.run(command, env=env, check=True, capture_output=True)
    return best(lambda: subprocess.run(command, env=env, check=True, capture_output=True), repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=200, help="STSb test pairs (200)")
    parser.add_argument("--repeats", type=int, default=9, help="best of this many (9)")
    parser.add_argument("--out", type=Path, help="also write the tables here (.md)")
    args = parser.parse_args()
    for name, value in ENV.items():
        os.environ.setdefault(name, value)
    import torch

    torch.set_num_threads(1)
    import bilrp.analysis.corpus as corpus
    from bilrp import SimilarityModel, datasets
    from bilrp.models.fingerprint import model_fingerprint

    real = corpus.run_unit

    def here(unit, records, *, ray=None, **kwargs):  # the Ray engine's shard path, in this process
        report = real(unit, records, **kwargs)
        report.engine = "ray"
        return report

    corpus.run_unit = here
    data, described = data_folder()
    pairs = datasets.load("stsb", "test", data_dir=data)[: args.pairs]
    model = SimilarityModel.from_pretrained()
    fingerprint = model_fingerprint(model)
    with tempfile.TemporaryDirectory() as folder, contextlib.redirect_stderr(open(os.devnull, "w")):  # noqa: SIM115
        work = Path(folder)
        fixed = fixed_costs(model, work, args.repeats)
        reads = per_shard(model, pairs, work, args.repeats, fingerprint)
        half = half_resume(model, pairs, work, max(2, args.repeats // 2))
        process = fresh_process(data, len(pairs), work, max(2, args.repeats // 2))
    jsonl_checked, jsonl_plain = reads["analysis, JSONL (local engine)"]
    fixed_first = fixed["fingerprint, first time in a process"] + fixed["lock (take and release)"]
    checks = fixed_first + jsonl_checked - jsonl_plain  # every line verified
    half_checks = fixed_first + jsonl_checked - jsonl_plain  # half the lines verified, half stamped
    lines = [
        f"# Run checks against resuming ({len(pairs)} pairs, {described}; all-MiniLM-L6-v2, "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, one torch thread)",
        "",
        "| fixed cost per run | s |",
        "|---|---:|",
        *(f"| {name} | {seconds:.4f} |" for name, seconds in fixed.items()),
        "",
        "| re-reading a complete run (fingerprint given, no lock) | verified (s) | not (s) | verification / reading |",
        "|---|---:|---:|---:|",
        *(f"| {name} | {c:.4f} | {p:.4f} | {(c - p) / p:+.1%} |" for name, (c, p) in reads.items()),
        "",
        "| resume as users run it | resume (s) | checks (s) | checks / resume |",
        "|---|---:|---:|---:|",
        f"| `bilrp analyze pos` rerun, fresh process, complete run | {process:.2f} | {checks:.3f} | "
        f"{checks / process:.1%} |",
        f"| `run_corpus` resuming a run half done (computing the other half) | {half:.2f} | {half_checks:.3f} | "
        f"{half_checks / half:.1%} |",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
