"""The ``bilrp evaluate`` subcommand: ``sts``, ``perturbation``, ``rules``, ``conservation``, ``ground-truth``.

:func:`register` adds the subcommand to the main CLI's subparsers; every command writes its results (markdown,
CSV/JSON, figures) to ``--out`` and returns an exit status. Bad arguments raise :class:`EvaluationError`
(a ``ValueError``) with a one-line message; every numeric argument is checked when it is parsed, with the
rules the Python API applies (:mod:`bilrp._validation`). Registering imports no torch (``--help`` is fast).
``python -m bilrp.evaluation.cli ...`` runs the subcommand alone.
"""

from __future__ import annotations

import argparse
import random
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from .._catalog import METHOD_NAMES, RULE_SET_NAMES
from .._cli_support import (
    OneLineParser,
    add_engine_arguments,
    add_rules_argument,
    number_parser,
    positive_int,
    positive_number,
    rules_options,
    seed,
)
from .._validation import NON_NEGATIVE_INT
from .errors import FRACTION, check_choices

__all__ = ["register", "main", "build_parser"]

_DEFAULT_OUT = Path("results")
SHARDS_FOLDER = "shards"
"""Where ``--engine ray`` keeps a run's Parquet shards, inside ``--out`` (a rerun resumes from them)."""
_fraction = number_parser(FRACTION)
_non_negative_int = number_parser(NON_NEGATIVE_INT)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``evaluate`` and its four commands to ``subparsers`` (each sets ``func(args) -> int``)."""
    parser = subparsers.add_parser(
        "evaluate",
        help="evaluate a model and its explanations (STS, perturbation, conservation, ground truth)",
        description="Evaluate a similarity model and its explanations; results go to --out.",
    )
    commands = parser.add_subparsers(dest="evaluation", metavar="EVALUATION", required=True)

    sts = commands.add_parser("sts", help="Spearman correlation with gold scores (paper Table 1)")
    _common(sts, dataset="stsb")
    add_engine_arguments(sts)
    sts.set_defaults(func=_run_sts)

    perturbation = commands.add_parser("perturbation", help="perturbation curves and AUPC (paper Table 2)")
    _common(perturbation, dataset="stsb")
    perturbation.add_argument(
        "--methods",
        nargs="+",
        default=["random", "embedding", "hxp", "bilrp", "ij"],
        metavar="METHOD",
        help="methods to compare (random embedding hxp bilrp ij); BiLRP is tested against the others",
    )
    perturbation.add_argument(
        "--step", type=_fraction, default=0.04, help="fraction of tokens put back per step, in (0, 1] (0.04)"
    )
    perturbation.add_argument("--filler", help="filler token (default: the tokenizer's mask token)")
    perturbation.add_argument("--ij-steps", type=positive_int, default=20, help="path points of Integrated Jacobians")
    add_rules_argument(perturbation, default="paper")
    add_engine_arguments(perturbation)
    perturbation.set_defaults(func=_run_perturbation)

    rules = commands.add_parser(
        "rules", help="rule sets compared: perturbation AUPC, bias shares and time (docs/results.md)"
    )
    _common(rules, dataset="stsb")
    rules.add_argument(
        "--rules",
        nargs="+",
        default=None,
        metavar="RULES",
        help=(
            f"rule sets ({', '.join(RULE_SET_NAMES)}; epsilon and gamma take =value); the first is the reference "
            "of the paired tests (default: paper epsilon=0.01 epsilon=0.1 epsilon=1 gamma=0.25 attnlrp "
            "attnlrp-epsilon=0.1)"
        ),
    )
    rules.add_argument(
        "--step", type=_fraction, default=0.04, help="fraction of tokens put back per step, in (0, 1] (0.04)"
    )
    rules.add_argument("--filler", help="filler token (default: the tokenizer's mask token)")
    rules.set_defaults(func=_run_rules)

    conservation = commands.add_parser("conservation", help="summed relevance against the score (appendix C)")
    _common(conservation, dataset="stsb")
    add_rules_argument(conservation, default="paper")
    add_engine_arguments(conservation)
    conservation.set_defaults(func=_run_conservation)

    ground_truth = commands.add_parser(
        "ground-truth", help="noun-matching task: fine-tune with QKV pooling, then ACS of explanations"
    )
    _common(ground_truth, dataset="stsb", split="dev")
    ground_truth.add_argument("--epochs", type=positive_int, default=3, help="training epochs (3)")
    ground_truth.add_argument("--learning-rate", type=positive_number, default=1e-4, help="AdamW learning rate")
    ground_truth.add_argument(
        "--trainable-layers", type=_non_negative_int, default=2, help="top Transformer layers trained (2)"
    )
    ground_truth.add_argument("--holdout", type=_fraction, default=0.2, help="share of the pairs held out (0.2)")
    ground_truth.add_argument("--spacy", default="en", help="spaCy language or pipeline for the noun tags")
    add_rules_argument(ground_truth, default="paper")
    ground_truth.set_defaults(func=_run_ground_truth)


def _common(parser: argparse.ArgumentParser, dataset: str, split: str = "test") -> None:
    parser.add_argument("--dataset", default=dataset, help=f"stsb, sick, biosses, mstsb-<lang>[-<lang>] ({dataset})")
    parser.add_argument("--split", default=split, help=f"dataset split ({split})")
    parser.add_argument("--data-dir", help="dataset folder (default: $BILRP_DATA_DIR)")
    parser.add_argument("--model", default=None, help="model name or folder (default: all-MiniLM-L6-v2)")
    parser.add_argument("--limit", type=positive_int, help="use only the first N pairs")
    parser.add_argument("--seed", type=seed, default=0, help="random seed (default 0)")
    parser.add_argument("--batch-size", type=positive_int, default=32, help="texts per batch (default 32)")
    parser.add_argument("--out", type=Path, help="output folder (default: results/<evaluation>/<dataset>)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _prepare(args: argparse.Namespace, name: str):
    """Seed everything, load the pairs, and pick the output folder."""
    import numpy as np
    import torch

    from .data import select_pairs
    from .report import check_out_dir

    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    pairs = select_pairs(args.dataset, args.split, args.limit, args.data_dir)
    out = check_out_dir(args.out if args.out is not None else _DEFAULT_OUT / name / args.dataset)
    config = {"dataset": args.dataset, "split": args.split, "pairs": len(pairs), "limit": args.limit}
    return pairs, out, config


def _load_model(args: argparse.Namespace):
    from .._cli_support import load_model

    return load_model(args.model)


def _engine(args: argparse.Namespace, out: Path | None = None) -> dict:
    """``{"ray": RayOptions, "shards": OUT/shards}`` for ``--engine ray``, else ``{}`` (checked before loading)."""
    from .._cli_support import ray_options
    from ..corpus_runs import ModelSource

    ray = ray_options(args, ModelSource(args.model))
    return {} if ray is None else {"ray": ray, "shards": (out or Path()) / SHARDS_FOLDER}


def _finish(files: dict, out: Path, run=None) -> int:
    from .report import write_outputs
    from .runs import report_lines

    for line in report_lines(run):
        print(line, file=sys.stderr)
    written = write_outputs(out, files)
    print(files["results.md"])
    print(f"wrote {', '.join(path.name for path in written)} to {out}")
    return 0


def _run_sts(args: argparse.Namespace) -> int:
    from .sts import evaluate_sts

    _engine(args)  # fail before loading anything
    pairs, out, config = _prepare(args, "sts")
    result = evaluate_sts(_load_model(args), pairs, args.batch_size, not args.no_progress, config, **_engine(args, out))
    return _finish(result.files(), out, result.run)


def _run_perturbation(args: argparse.Namespace) -> int:
    from .perturbation import evaluate_perturbation

    check_choices("methods", args.methods, METHOD_NAMES)  # fail before loading the model
    rules = rules_options("bilrp", args.rules)
    _engine(args)
    pairs, out, config = _prepare(args, "perturbation")
    options = {"ij": {"n_steps": args.ij_steps}} if "ij" in args.methods else {}
    if "bilrp" in args.methods:
        options["bilrp"] = rules
    result = evaluate_perturbation(
        _load_model(args),
        pairs,
        methods=args.methods,
        step=args.step,
        filler=args.filler,
        batch_size=args.batch_size,
        seed=args.seed,
        method_options=options or None,
        progress=not args.no_progress,
        config=config,
        **_engine(args, out),
    )
    return _finish(result.files(), out, result.run)


def _run_rules(args: argparse.Namespace) -> int:
    from ..rule_sets import parse_rule_set
    from .rule_comparison import DEFAULT_RULE_SETS, evaluate_rules

    rules = args.rules or list(DEFAULT_RULE_SETS)
    for spec in rules:  # fail before loading the model
        parse_rule_set(spec)
    pairs, out, config = _prepare(args, "rules")
    result = evaluate_rules(
        _load_model(args),
        pairs,
        rules=rules,
        step=args.step,
        filler=args.filler,
        batch_size=args.batch_size,
        progress=not args.no_progress,
        config=config,
    )
    return _finish(result.files(), out)


def _run_conservation(args: argparse.Namespace) -> int:
    from .conservation import evaluate_conservation

    rules_options("bilrp", args.rules)
    _engine(args)
    pairs, out, config = _prepare(args, "conservation")
    result = evaluate_conservation(
        _load_model(args), pairs, args.batch_size, not args.no_progress, config, rules=args.rules,
        **_engine(args, out),
    )  # fmt: skip
    return _finish(result.files(), out, result.run)


def _run_ground_truth(args: argparse.Namespace) -> int:
    from .ground_truth import evaluate_ground_truth

    rules_options("bilrp", args.rules)
    pairs, out, config = _prepare(args, "ground-truth")
    result = evaluate_ground_truth(
        args.model,
        pairs,
        epochs=args.epochs,
        learning_rate=args.learning_rate,
        trainable_layers=args.trainable_layers,
        holdout=args.holdout,
        spacy_model=args.spacy,
        batch_size=args.batch_size,
        seed=args.seed,
        progress=not args.no_progress,
        config=config,
        rules=args.rules,
    )
    return _finish(result.files(), out)


def build_parser() -> argparse.ArgumentParser:
    """A stand-alone parser holding only ``evaluate`` (for ``python -m bilrp.evaluation.cli``)."""
    parser = OneLineParser(prog="bilrp", description="bilrp evaluations")
    register(parser.add_subparsers(dest="command", metavar="COMMAND", required=True))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``bilrp evaluate ...`` without the main CLI; bad arguments print one line and return 2.

    The libraries' own log lines and progress bars stay hidden, as in ``bilrp evaluate`` (:mod:`bilrp._quiet`).
    """
    from .._quiet import library_output

    with library_output():
        try:
            args = build_parser().parse_args(argv)
        except SystemExit as exit_:  # --help (0) or a bad argument (2, one line printed)
            return int(exit_.code or 0)
        func: Callable[[argparse.Namespace], int] = args.func
        try:
            return func(args)
        except ValueError as error:  # EvaluationError, DatasetError, ModelLoadError, ...
            print(f"bilrp evaluate: error: {error}", file=sys.stderr)
            return 2


if __name__ == "__main__":
    sys.exit(main())
