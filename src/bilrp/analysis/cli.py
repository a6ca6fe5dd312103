"""``bilrp analyze pos|multilingual|quantiles``: the corpus analyses on the command line.

The main CLI calls :func:`register` with its subparsers; each subcommand sets ``func`` to a function of the
parsed arguments that returns the exit status. Explanations are kept in run folders under ``--runs``
(default ``OUT/runs``), so analyses that share ``--runs`` share explanations, and an interrupted run resumes.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from .._catalog import DEFAULT_MODEL, METHOD_NAMES, POOLING_NAMES, SIMILARITY_NAMES
from .._cli_support import add_engine_arguments, add_rules_argument, number_parser, positive_int, rules_options
from .._validation import fraction_rule

__all__ = ["register"]

_QUANTILE_FRACTION = fraction_rule(0.0, 0.5, "right")
"""The share of pairs in each quantile group (also checked by :func:`bilrp.analysis.quantiles.compare_models`)."""


def _add_common(parser: argparse.ArgumentParser, several_models: bool) -> None:
    many = "+" if several_models else None
    parser.add_argument(
        "--model",
        nargs=many,
        default=[DEFAULT_MODEL] if several_models else DEFAULT_MODEL,
        help=f"checkpoint name or local folder{'s' if several_models else ''} (default {DEFAULT_MODEL})",
    )
    parser.add_argument(
        "--pooling",
        nargs=many,
        choices=POOLING_NAMES,
        help="pooling override" + (" (each model runs with each pooling)" if several_models else ""),
    )
    parser.add_argument("--similarity", choices=SIMILARITY_NAMES, help="similarity override")
    parser.add_argument("--method", default="bilrp", choices=METHOD_NAMES, help="explanation method (bilrp)")
    add_rules_argument(parser, default="paper")
    parser.add_argument("--split", default="test", help="dataset split (test)")
    parser.add_argument("--limit", type=positive_int, help="take the first N pairs only")
    parser.add_argument("--out", type=Path, required=True, help="output folder for figures, tables and JSON")
    parser.add_argument("--runs", type=Path, help="folder of resumable explanation runs (default OUT/runs)")
    parser.add_argument("--data-dir", type=Path, help="dataset folder (default $BILRP_DATA_DIR)")
    parser.add_argument("--batch-size", type=positive_int, default=32, help="texts per padded batch (32)")
    parser.add_argument("--shard-size", type=positive_int, default=32, help="pairs per written shard (32)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_engine_arguments(parser)


def register(subparsers) -> None:
    """Add ``analyze`` with the subcommands ``pos``, ``multilingual`` and ``quantiles`` to a CLI.

    Each subcommand's ``func(args)`` returns the exit status; user errors are raised as ``ValueError`` or
    ``OSError`` with a one-line message (the main CLI prints them).
    """
    parser = subparsers.add_parser(
        "analyze",
        help="corpus analyses: POS interactions, multilingual comparison, model differences",
        description="Explain a whole dataset (resumable) and aggregate the explanations (paper section 5).",
    )
    kinds = parser.add_subparsers(dest="analysis", required=True, metavar="{pos,multilingual,quantiles}")

    pos = kinds.add_parser("pos", help="relevance over POS-tag pairs (Figure 3)")
    pos.add_argument("--dataset", default="stsb", help="stsb, sick, biosses, mstsb-<lang>, mstsb-<la>-<lb> (stsb)")
    _add_common(pos, several_models=False)
    pos.set_defaults(func=_run_pos)

    multilingual = kinds.add_parser("multilingual", help="monolingual vs mixed-language mSTSb (Figures 4c, 7)")
    multilingual.add_argument("--dataset", default="mstsb", choices=["mstsb"], help="multilingual STSb (mstsb)")
    multilingual.add_argument("--languages", nargs=2, default=["en", "de"], metavar=("A", "B"), help="(en de)")
    multilingual.add_argument("--k", type=positive_int, default=10, help="tag pairs per sign (10)")
    _add_common(multilingual, several_models=False)
    multilingual.set_defaults(func=_run_multilingual)

    quantiles = kinds.add_parser("quantiles", help="model differences: errors and top interactions")
    quantiles.add_argument("--dataset", default="stsb", help="dataset with gold scores (stsb)")
    quantiles.add_argument(
        "--fraction", type=number_parser(_QUANTILE_FRACTION), default=0.25, help="share of pairs per group (0.25)"
    )
    quantiles.add_argument("--k", type=positive_int, default=5, help="interactions per group and sign (5)")
    quantiles.add_argument("--levels", type=positive_int, help="gold-similarity levels (one per scale unit)")
    _add_common(quantiles, several_models=True)
    quantiles.set_defaults(func=_run_quantiles)


def _check_engine(args: argparse.Namespace) -> None:
    """Refuse ``--address``/``--workers`` without ``--engine ray``, or Ray without its extra (before any load)."""
    from .._cli_support import ray_options

    ray_options(args, None)
    args.failures = []


def _records(args: argparse.Namespace, model, dataset: str, spec):
    """The records of ``dataset`` explained by ``model`` (loaded from ``spec``), with the chosen engine.

    The pairs that could not be explained are added to ``args.failures`` (written to ``failures.json``).
    """
    from .._cli_support import ray_options
    from ..corpus_runs import ModelSource
    from .corpus import corpus_failures, run_dataset, run_directory

    runs = args.runs or args.out / "runs"
    ray = ray_options(args, ModelSource(spec.name, spec.pooling, spec.similarity))
    records = run_dataset(
        model,
        dataset,
        runs,
        split=args.split,
        limit=args.limit,
        data_dir=args.data_dir,
        method=args.method,
        batch_size=args.batch_size,
        shard_size=args.shard_size,
        progress=not args.no_progress,
        ray=ray,
        **rules_options(args.method, args.rules, given=False),
    )
    folder = run_directory(runs, dataset, args.split, model, args.method)
    args.failures += [{"run": folder.name, **failure} for failure in corpus_failures(folder)]
    return records


def _languages(dataset: str) -> tuple[str, str]:
    match = re.fullmatch(r"mstsb-([a-z]{2})(?:-([a-z]{2}))?", dataset)
    if match is None:
        return "en", "en"
    return match.group(1), match.group(2) or match.group(1)


def _report(written: list[Path], args: argparse.Namespace) -> int:
    """Print the result table (the markdown file the analysis wrote), then every file written, one a line."""
    from .._io import write_json

    if args.failures:
        written = [*written, write_json(args.out / "failures.json", args.failures)]
    for table in (path for path in written if path.suffix == ".md"):
        print(table.read_text(encoding="utf-8").rstrip("\n") + "\n")
    for path in written:
        print(f"wrote {path}")
    return 0


def _run_pos(args: argparse.Namespace) -> int:
    """``analyze pos``: POS-tag interactions of one model on one dataset."""
    from .metrics import spearman
    from .pos import pos_interactions, save_pos
    from .specs import ModelSpec, describe
    from .tagging import load_tagger

    _check_engine(args)
    args.out.mkdir(parents=True, exist_ok=True)
    taggers = [load_tagger(language) for language in _languages(args.dataset)]  # fail before explaining
    spec = ModelSpec(args.model, args.pooling, args.similarity)
    model = spec.load()
    records = _records(args, model, args.dataset, spec)
    interactions = pos_interactions([r.explanation for r in records], *taggers)
    summary = {"dataset": f"{args.dataset} ({args.split})", "model": describe(model), "method": args.method}
    if len(records) > 1 and all(r.gold is not None for r in records):
        summary["Spearman x100"] = 100 * spearman(records)
    title = f"POS interactions: {describe(model)} on {args.dataset}"
    return _report(save_pos(interactions, args.out, title, summary), args)


def _run_multilingual(args: argparse.Namespace) -> int:
    """``analyze multilingual``: EN-EN, DE-DE and EN-DE (or other languages) of mSTSb."""
    from .multilingual import compare_settings, settings_for
    from .specs import ModelSpec, describe
    from .tagging import load_tagger

    _check_engine(args)
    args.out.mkdir(parents=True, exist_ok=True)
    spec = ModelSpec(args.model, args.pooling, args.similarity)
    model = spec.load()
    settings = settings_for(*args.languages)
    records = {setting: _records(args, model, setting.dataset, spec) for setting in settings}
    comparison = compare_settings(records, load_tagger, describe(model), args.k)
    for result in comparison.results:
        if result.unavailable:
            print(f"{result.setting.name}: POS analysis {result.unavailable}", file=sys.stderr)
    return _report(comparison.save(args.out), args)


def _run_quantiles(args: argparse.Namespace) -> int:
    """``analyze quantiles``: model differences on one dataset."""
    from .metrics import gold_range
    from .quantiles import compare_models
    from .specs import ModelSpec, describe

    _check_engine(args)
    args.out.mkdir(parents=True, exist_ok=True)
    span = gold_range(args.dataset)
    records = {}
    for name in args.model:
        for pooling in args.pooling or [None]:
            spec = ModelSpec(name, pooling, args.similarity)
            model = spec.load()
            records[describe(model)] = _records(args, model, args.dataset, spec)
    comparison = compare_models(records, args.dataset, span, args.fraction, args.k, args.levels)
    return _report(comparison.save(args.out), args)
