"""The ``bilrp`` command line: ``bilrp explain`` and the subcommands of the other bilrp packages.

``bilrp explain "A man is playing a guitar." "Someone plays music on a guitar." --out pairs.png --out r.json``
prints the score, the bias and the strongest token pairs, and writes the pair plot and the JSON data.

**Hosting subcommands (the contract).** Each module named in :data:`SUBCOMMAND_MODULES`
(``bilrp.evaluation.cli``, ``bilrp.analysis.cli``) exposes ``register(subparsers) -> None``, which adds one
subcommand with ``parser = subparsers.add_parser(name, help=..., description=...)``, its arguments, and
``parser.set_defaults(func=run)``, where ``run(args: argparse.Namespace) -> int`` does the work and returns
the exit status (0 on success). The modules are imported when the parser is built; one that does not exist
(yet) is skipped, any other import error propagates. Keep ``register`` cheap: import models, data and heavy
libraries inside ``run`` (``bilrp --help`` imports no torch; ``tests/test_startup.py`` checks it), take the
names for ``choices=`` from :mod:`bilrp._catalog` and the numeric argument types from
:mod:`bilrp._cli_support` (the rules of the Python API). The modules need not import this one (it sits above
them):

- a *user error* (bad input, a missing or unwritable file) is raised as ``ValueError`` (any subclass:
  :class:`UsageError`, ``bilrp.models.ModelLoadError``, ``bilrp.models.TextTooLongError``, ...) or
  ``OSError``, with a message that says what was wrong and what to do. :func:`main` prints it as one line
  ``bilrp <command>: error: <message>`` on stderr and returns exit status 2, without a traceback (the
  global ``--traceback`` flag shows it). Any other exception is a bug and propagates with its traceback.
- warnings issued with ``warnings.warn`` while a command runs are printed as ``warning: <message>`` lines
  on stderr (e.g. how many tokens a truncation dropped).
- the libraries' own output (transformers', sentence-transformers', the hub's and ``kernels``' log lines,
  progress bars and warnings) is hidden while a command runs (:func:`bilrp._quiet.library_output`); the global
  ``--verbose`` flag shows it. So a user error is exactly one line on stderr.
- an argument that is not UTF-8 text (bytes decoded with ``surrogateescape``) is refused as one line
  ``bilrp: error: ...`` with exit status 2 before anything is parsed.
- output files appear complete or not at all: check every output path before computing anything and write
  through a temporary file in the same directory (:func:`check_outputs`, :func:`write_atomically`).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ._catalog import DEFAULT_MODEL, GRANULARITY_NAMES, METHOD_NAMES, POOLING_NAMES, SIMILARITY_NAMES, VERSION
from ._cli_support import (
    OneLineParser,
    add_encode_arguments,
    add_rules_argument,
    encode_options,
    fraction,
    load_model,
    positive_int,
    rules_options,
)
from ._io import atomic_paths, check_name, json_text, one_line, probe_writable
from ._quiet import library_output
from ._validation import Refusal

if TYPE_CHECKING:
    from .explanation import Explanation

__all__ = [
    "main",
    "build_parser",
    "UsageError",
    "SUBCOMMAND_MODULES",
    "OUTPUT_FORMATS",
    "check_outputs",
    "write_atomically",
    "format_summary",
]

SUBCOMMAND_MODULES = ("bilrp.evaluation.cli", "bilrp.analysis.cli", "bilrp.ranking.cli", "bilrp.server.cli")
"""Modules whose ``register(subparsers)`` adds a subcommand (skipped while they do not exist)."""

OUTPUT_FORMATS = {".png": "png", ".svg": "svg", ".pdf": "pdf", ".html": "html", ".htm": "html", ".json": "json"}
"""``--out`` file extensions and what each writes."""

USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError, Refusal)
"""Exceptions reported as one ``error:`` line with exit status 2 (see the module docstring)."""


class UsageError(ValueError):
    """Bad command-line input: reported as one ``error:`` line on stderr, exit status 2."""


# ---------------------------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    """The ``bilrp`` parser: ``explain`` plus the subcommands of :data:`SUBCOMMAND_MODULES` that exist.

    Building it imports no model code (the choices come from :mod:`bilrp._catalog`), so ``--help`` is fast.
    """
    parser = OneLineParser(
        prog="bilrp",
        description="Explain why a Transformer similarity model finds two texts similar (BiLRP token pairs).",
    )
    parser.add_argument("--version", action="version", version=f"bilrp {VERSION}")
    parser.add_argument("--traceback", action="store_true", help="show the full traceback of a user error")
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="also show the libraries' own log lines and progress bars (transformers, sentence-transformers, kernels)",
    )
    subparsers = parser.add_subparsers(title="commands", dest="command", required=True, metavar="COMMAND")
    _register_explain(subparsers)
    for name in SUBCOMMAND_MODULES:
        module = _import_if_present(name)
        if module is not None:
            module.register(subparsers)
    return parser


def _register_explain(subparsers: argparse._SubParsersAction) -> None:
    """Add ``explain`` and its arguments to ``subparsers``."""
    explain = subparsers.add_parser(
        "explain",
        help="explain the similarity of two texts with token-pair relevance",
        description=(
            "Explain the similarity of TEXT_A and TEXT_B: print the score, the bias and the strongest "
            "positive and negative token pairs, and write pictures, an HTML view or JSON with --out."
        ),
        epilog=(
            "JSON output: {model, method, text_a, text_b, tokens_a, tokens_b, relevance (rows: tokens of A, "
            "columns: tokens of B), score, bias, prompt_a, prompt_b, prompt_length_a, prompt_length_b, rules, "
            "bias_share, tokens_a_with_bias_b, bias_a_with_tokens_b, bias_with_bias, step_error}, with "
            "sum(relevance) + bias == score and bias == sum(tokens_a_with_bias_b) + sum(bias_a_with_tokens_b) + "
            "bias_with_bias + step_error."
        ),
    )
    explain.add_argument("text_a", metavar="TEXT_A", help="the first text")
    explain.add_argument("text_b", metavar="TEXT_B", help="the second text")
    explain.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        metavar="NAME_OR_PATH",
        help=(
            f"local HuggingFace or sentence-transformers folder, or a hub name in the local cache (default: "
            f"{DEFAULT_MODEL}, shipped offline); set HF_HUB_OFFLINE=0 to allow downloads"
        ),
    )
    explain.add_argument("--method", choices=METHOD_NAMES, default="bilrp", help="attribution method (default: bilrp)")
    add_rules_argument(explain, default=None)
    explain.add_argument("--pooling", choices=POOLING_NAMES, help="override the model's pooling")
    explain.add_argument("--similarity", choices=SIMILARITY_NAMES, help="override the model's similarity")
    explain.add_argument("--words", action="store_true", help="sum subtoken relevance into words (total conserved)")
    explain.add_argument(
        "--granularity",
        choices=GRANULARITY_NAMES,
        default="token",
        help="rows and columns of R: tokens, words or sentences, computed directly (default: token)",
    )
    explain.add_argument(
        "--top", type=positive_int, default=5, metavar="K", help="list the K strongest pairs of each sign (default 5)"
    )
    explain.add_argument(
        "--out",
        action="append",
        default=[],
        metavar="FILE",
        help="write FILE, by extension: .png/.svg/.pdf picture, .html view, .json data (repeatable)",
    )
    explain.add_argument(
        "--plot",
        choices=("pairs", "heatmap"),
        default="pairs",
        help="picture for .png/.svg/.pdf: the pair plot (default) or the matrix heatmap",
    )
    explain.add_argument(
        "--threshold",
        type=fraction,
        default=0.02,
        metavar="FRACTION",
        help="pair plot: hide pairs with |R| below FRACTION of the largest (default 0.02)",
    )
    explain.add_argument(
        "--no-truncate",
        action="store_true",
        help="fail on a text longer than the model maximum instead of truncating it with a warning",
    )
    add_encode_arguments(explain)
    explain.set_defaults(func=run_explain)


def _import_if_present(name: str):
    """The module ``name``, or ``None`` when it (or its package) does not exist; other import errors propagate."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        if error.name is not None and (name == error.name or name.startswith(error.name + ".")):
            return None
        raise


# ---------------------------------------------------------------------------------------------- main
def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``bilrp`` command line with ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    problem = _unreadable_argument(argv)
    if problem:
        print(f"bilrp: error: {problem} (see bilrp --help)", file=sys.stderr)
        return 2
    with library_output(verbose=_wants_verbose(argv)):  # the libraries' chatter only with --verbose
        args = build_parser().parse_args(argv)
        return _run_command(args)


def _wants_verbose(argv: Sequence[str]) -> bool:
    """Whether ``--verbose`` is among the options before the command (known before the parser is built)."""
    for argument in argv:
        if argument == "--verbose":
            return True
        if not argument.startswith("-"):
            return False
    return False


def _run_command(args: argparse.Namespace) -> int:
    """Run the parsed command: a user error is one ``error:`` line and exit status 2 (see the module docstring)."""
    prog = f"bilrp {args.command}"
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.showwarning = _print_warning
        try:
            return int(args.func(args))
        except USER_ERRORS as error:
            if args.traceback:
                raise
            message = one_line(error) or type(error).__name__
            print(f"{prog}: error: {message}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print(f"{prog}: interrupted", file=sys.stderr)
            return 130


def _unreadable_argument(argv: Sequence[object]) -> str | None:
    """What is wrong with the first argument that is not UTF-8 text, or ``None`` when all are.

    Bytes that are not UTF-8 reach Python as lone surrogates (``surrogateescape``), which no tokenizer,
    file name or JSON file can take.
    """
    for number, argument in enumerate(argv, start=1):
        if not isinstance(argument, str):
            return f"argument {number} is {type(argument).__name__}, not text: pass every argument as a str"
        try:
            argument.encode("utf-8")
        except UnicodeEncodeError:
            shown = _shorten(ascii(argument)[1:-1], 40)
            return f"argument {number} ({shown}) is not valid UTF-8 text: pass texts and file names as UTF-8"
    return None


def _print_warning(message, category, filename, lineno, file=None, line=None) -> None:
    if issubclass(category, UserWarning):
        print(f"warning: {' '.join(str(message).split())}", file=sys.stderr)


# ---------------------------------------------------------------------------------------------- outputs
def check_outputs(paths: Sequence[str | Path]) -> list[Path]:
    """Check that every output path has a known extension, a name short enough for the file system and a
    writable folder; raises :class:`UsageError`.

    Call this before any computation, so that a bad path fails at once and no output is half-written.
    """
    checked: list[Path] = []
    for given in paths:
        path = Path(given).expanduser()
        shown, known = str(given), ", ".join(OUTPUT_FORMATS)
        shown = shown if len(shown) <= 80 else f"{shown[:38]}...{shown[-38:]}"
        if path.suffix.lower() not in OUTPUT_FORMATS:
            raise UsageError(f"cannot write {shown}: unknown extension {path.suffix or '(none)'!r}; use {known}")
        try:
            check_name(path)
        except OSError as error:
            raise UsageError(f"cannot write {shown}: {error.strerror}") from None
        if path.is_dir():
            raise UsageError(f"cannot write {shown}: it is a directory; give a file name ending in {known}")
        if not path.parent.is_dir():
            raise UsageError(f"cannot write {shown}: directory {str(path.parent)!r} does not exist; create it first")
        try:
            probe_writable(path.parent)
        except OSError as error:
            raise UsageError(f"cannot write {shown}: {error.strerror or error}; choose a writable directory") from None
        if path not in checked:
            checked.append(path)
    return checked


def write_atomically(writers: Sequence[tuple[Path, Callable[[Path], None]]]) -> None:
    """Run each ``write(temporary_path)`` into a temporary file beside its target, then rename all of them.

    Files appear complete or not at all: if any writer fails, no target is created or replaced.
    """
    with atomic_paths([path for path, _ in writers]) as temporaries:
        for temporary, (_, write) in zip(temporaries, writers, strict=True):
            write(temporary)


# ---------------------------------------------------------------------------------------------- explain
def run_explain(args: argparse.Namespace) -> int:
    """``bilrp explain``: print score, bias and top pairs; write the ``--out`` files."""
    for side, text in (("TEXT_A", args.text_a), ("TEXT_B", args.text_b)):
        if not text.strip():
            raise UsageError(f"{side} is empty: give a text with at least one non-space character")
    options = rules_options(args.method, args.rules)  # a bad rule set fails before the model loads
    if args.words and args.granularity != "token":
        raise UsageError(f"--words and --granularity {args.granularity} both group the tokens: give one of them")
    options["granularity"] = args.granularity
    options.update(encode_options(args))  # sentence-transformers' encode() options, checked with the model
    outputs = check_outputs(args.out)

    from .explainer import explain

    model = load_model(args.model, args.pooling, args.similarity)
    explanation = explain(
        model, args.text_a, args.text_b, method=args.method, truncate=not args.no_truncate, **options
    )
    if args.words:
        explanation = explanation.to_words()
    unit = "word" if args.words else args.granularity
    print(format_summary(explanation, args.top, unit=unit))
    write_atomically([(path, _writer(explanation, path, args)) for path in outputs])
    for path in outputs:
        print(f"wrote {path}")
    return 0


def _writer(explanation: Explanation, path: Path, args: argparse.Namespace) -> Callable[[Path], None]:
    kind = OUTPUT_FORMATS[path.suffix.lower()]

    def write(temporary: Path) -> None:
        from . import plotting

        if kind == "json":
            temporary.write_text(json_text(explanation.to_dict()), "utf-8")
        elif kind == "html":
            page = plotting.to_html(explanation, k=args.top, threshold=args.threshold, full_page=True)
            temporary.write_text(page, "utf-8")
        else:
            figure = (
                plotting.plot_pairs(explanation, threshold=args.threshold)
                if args.plot == "pairs"
                else plotting.plot_heatmap(explanation)
            )
            figure.savefig(temporary, format=kind, dpi=150, bbox_inches="tight")

    return write


def format_summary(explanation: Explanation, k: int = 5, words: bool = False, unit: str | None = None) -> str:
    """The text ``bilrp explain`` prints: model, texts, score = sum of R + bias, top pairs of each sign.

    ``unit`` names the rows and columns (``"token"``, ``"word"``, ``"sentence"``); ``words`` is ``unit="word"``.
    """
    from .token_display import display_token

    total = float(explanation.relevance.double().sum())
    unit = unit or ("word" if words else "token")
    lines = [
        f"model   {explanation.model}   method {explanation.method}   pairs of {unit}s",
        f"text A  {_shorten(explanation.text_a)}",
        f"text B  {_shorten(explanation.text_b)}",
        f"score   {explanation.score:.4f} = sum of R {total:.4f} + bias {explanation.bias:.4f}   "
        f"(bias share {explanation.bias_share:.0%}{', rules ' + explanation.rules if explanation.rules else ''})",
    ]
    if explanation.has_decomposition:
        column = float(explanation.tokens_a_with_bias_b.sum())
        row = float(explanation.bias_a_with_tokens_b.sum())
        lines.append(
            f"bias    {explanation.bias:.4f} = tokens of A x bias of B {column:.4f} + bias of A x tokens of B "
            f"{row:.4f} + bias x bias {explanation.bias_with_bias:.4f}"
            + (f" + step error {explanation.step_error:.2e}" if abs(explanation.step_error) > 1e-6 else "")
        )
    top = explanation.top(k)
    for sign, effect in (("positive", "raise"), ("negative", "lower")):
        pairs = top[sign]
        noun = "pair" if len(pairs) == 1 else "pairs"
        lines += ["", f"top {len(pairs)} {sign} {noun} ({effect} the similarity)"]
        if not pairs:
            lines.append("  (none)")
            continue
        shown_a = [display_token(p.token_a) for p in pairs]
        shown_b = [display_token(p.token_b) for p in pairs]
        width = max(len(unit) + 2, *(len(s) for s in shown_a))
        lines.append(f"  {'R':>9}  {'i':>3}  {unit + ' A':<{width}}  {'j':>3}  {unit} B")
        lines += [
            f"  {p.relevance:>+9.4f}  {p.i:>3}  {a:<{width}}  {p.j:>3}  {b}"
            for p, a, b in zip(pairs, shown_a, shown_b, strict=True)
        ]
    return "\n".join(lines)


def _shorten(text: str, limit: int = 100) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."
