"""Pieces every ``bilrp`` subcommand shares: a one-line-error parser, argument types and quiet model loading.

``bilrp.cli`` and the subcommand modules (``bilrp.evaluation.cli``, ``bilrp.analysis.cli``) import from here,
so the subcommands never import the main CLI module that registers them. The numeric argument types accept
exactly what the Python API accepts: both use the rules of :mod:`bilrp._validation`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING, NoReturn

from ._validation import NON_NEGATIVE_INT, POSITIVE_INT, POSITIVE_NUMBER, SEED, Rule, fraction_rule

if TYPE_CHECKING:
    from .models import SimilarityModel

__all__ = [
    "OneLineParser",
    "number_parser",
    "positive_int",
    "non_negative_int",
    "positive_number",
    "fraction",
    "seed",
    "load_model",
    "add_rules_argument",
    "rules_options",
    "add_engine_arguments",
    "ray_options",
    "add_encode_arguments",
    "encode_options",
]


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (``prog: error: ...``) with exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def number_parser(rule: Rule) -> Callable[[str], int | float]:
    """An argparse ``type`` that reads a number and keeps it when ``rule`` accepts it (as the Python API does).

    A refused text gives ``argument --top: '0' is not a positive whole number``.
    """

    def parse(text: str) -> int | float:
        value = rule.parse(text)
        if value is None:
            raise argparse.ArgumentTypeError(f"{text!r} is not {rule.wanted}")
        return value

    return parse


positive_int = number_parser(POSITIVE_INT)
non_negative_int = number_parser(NON_NEGATIVE_INT)
positive_number = number_parser(POSITIVE_NUMBER)
seed = number_parser(SEED)
fraction = number_parser(fraction_rule(0.0, 1.0, "left"))


def load_model(name_or_path: str | None, pooling: str | None = None, similarity: str | None = None) -> SimilarityModel:
    """Load a model for the command line (:func:`bilrp.models.load_quietly`: no progress bars, offline)."""
    from .models import load_quietly

    return load_quietly(name_or_path, pooling, similarity)


def add_rules_argument(parser: argparse.ArgumentParser, default: str | None) -> None:
    """Add ``--rules`` (BiLRP's rule set, :mod:`bilrp.rule_sets`) with ``default`` (``None``: the family's)."""
    from ._catalog import RULE_SET_NAMES

    chosen = "the model family's (docs/results.md)" if default is None else f"{default}, as in the paper"
    parser.add_argument(
        "--rules",
        default=default,
        metavar="RULES",
        help=(
            f"BiLRP's rule set: {', '.join(RULE_SET_NAMES)} (epsilon and gamma take =value, e.g. epsilon=0.1); "
            f"default: {chosen}"
        ),
    )


def rules_options(method: str, rules: str | None, given: bool = True) -> dict:
    """``{"rules": rules}`` for BiLRP (checked, a one-line ``ValueError`` if unknown), ``{}`` otherwise.

    ``given``: whether the user named the rules (then another method is refused, since it has none).
    """
    if rules is None:
        return {}
    if method != "bilrp":
        if given:
            raise ValueError(f"--rules chooses BiLRP's rules; method {method!r} has none (drop --rules)")
        return {}
    from .rule_sets import parse_rule_set

    parse_rule_set(rules)
    return {"rules": rules}


def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--engine {local,ray}``, ``--address`` and ``--workers`` (the corpus commands; docs/scaling.md)."""
    from .corpus_runs.engine import ENGINES

    group = parser.add_argument_group("engine (docs/scaling.md)")
    group.add_argument(
        "--engine", choices=ENGINES, default="local", help="run in this process (local, the default) or on Ray"
    )
    group.add_argument(
        "--address",
        metavar="ADDRESS",
        help="Ray cluster to use (auto, HOST:PORT, ray://HOST:10001); default: a local Ray started for the run",
    )
    group.add_argument(
        "--workers", type=positive_int, metavar="N", help="Ray actors, one model each (default: one per GPU, else CPU)"
    )


def ray_options(args: argparse.Namespace, source: object):
    """The ``RayOptions`` of ``--engine ray`` (``None`` for the local engine), checked before any model loads.

    ``source`` is what the Ray actors load the model from (a picklable object with ``load()``). Raises a
    one-line ``ValueError`` for ``--address``/``--workers`` without ``--engine ray``, or when the ``ray`` extra
    is not installed.
    """
    if args.engine != "ray":
        given = [flag for flag, value in (("--address", args.address), ("--workers", args.workers)) if value]
        if given:
            raise ValueError(f"{' and '.join(given)} choose how Ray runs: add --engine ray, or drop them")
        return None
    from .corpus_runs.engine import RayOptions
    from .corpus_runs.ray_engine import MISSING_EXTRA, ray_available

    if not ray_available():
        raise ValueError(MISSING_EXTRA)
    return RayOptions(source, args.address, args.workers)


def add_encode_arguments(parser: argparse.ArgumentParser, sides: str = "text A, then text B") -> None:
    """Add sentence-transformers' ``encode()`` options (``--prompt``, ``--prompt-name``, ``--truncate-dim``,
    ``--normalize-embeddings``, ``--similarity-fn-name``): the explained score is then what ``st.similarity`` gives.
    """
    group = parser.add_argument_group("sentence-transformers encode() options (explain the score they give)")
    group.add_argument(
        "--prompt", action="append", metavar="TEXT", help=f"literal prompt put before the texts (twice: {sides})"
    )
    group.add_argument(
        "--prompt-name", action="append", metavar="NAME", help=f"one of the model's prompts (twice: {sides})"
    )
    group.add_argument(
        "--truncate-dim", type=positive_int, metavar="K", help="cut the embeddings to their first K dimensions"
    )
    group.add_argument("--normalize-embeddings", action="store_true", help="normalise the embeddings to length 1")
    group.add_argument(
        "--similarity-fn-name",
        metavar="NAME",
        help="cosine or dot (default: the model's); euclidean and manhattan are distances and are refused",
    )


def encode_options(args: argparse.Namespace) -> dict:
    """The keyword options of :func:`add_encode_arguments` for ``bilrp.explain`` / ``explain_ranking``."""
    options: dict = {}
    for flag, key in (("--prompt", "prompt"), ("--prompt-name", "prompt_name")):
        values = getattr(args, key)
        if values and len(values) > 2:
            raise ValueError(f"{flag} given {len(values)} times: give it once (both texts) or twice (one per text)")
        if values:
            options[key] = values[0] if len(values) == 1 else (values[0], values[1])
    if args.truncate_dim is not None:
        options["truncate_dim"] = args.truncate_dim
    if args.normalize_embeddings:
        options["normalize_embeddings"] = True
    if args.similarity_fn_name is not None:
        options["similarity_fn_name"] = args.similarity_fn_name
    return options
