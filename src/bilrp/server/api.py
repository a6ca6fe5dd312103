"""The JSON API's requests: read and check each body, refusing bad input with a one-line :class:`ApiError`.

Every check that needs no model runs here, before any work is queued: the body is JSON, an object, its fields
have the right types and known values, and the texts are neither empty nor over the server's limit. The
status codes: 400 for a body that is not what the route takes (malformed JSON, nested too deeply or holding a
number of more digits than Python reads, wrong types, unknown method, granularity, model, rules, figure kind
or format), 422 for well-formed input that cannot be explained (an empty text, a text or ``top_k`` over the
limit). Fields a route does not know are ignored.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .._catalog import GRANULARITY_NAMES, METHOD_NAMES
from .._io import one_line
from .settings import ServerSettings

__all__ = [
    "ApiError",
    "GRANULARITY_CHOICES",
    "FIGURE_KINDS",
    "FIGURE_FORMATS",
    "ExplainRequest",
    "FigureRequest",
    "RankRequest",
    "ContrastRequest",
    "RankFigureRequest",
    "ContrastFigureRequest",
    "read_object",
    "parse_explain",
    "parse_figure",
    "parse_rank",
    "parse_contrast",
    "parse_rank_figure",
    "parse_contrast_figure",
    "granularity_for",
]

GRANULARITY_CHOICES = ("auto", *GRANULARITY_NAMES)
"""What ``granularity`` may be: ``"auto"`` (tokens; words past ``auto_word_from`` words; sentences
past ``auto_sentence_from``) or a bilrp one."""
FIGURE_KINDS = ("pairs", "heatmap")
"""``/api/figure`` kinds: ``bilrp explain --plot pairs|heatmap``."""
FIGURE_FORMATS = ("png", "svg", "json")
"""``/api/figure`` formats: the files ``bilrp explain --out x.png|x.svg|x.json`` writes (also those of
``/api/rank/figure`` and ``/api/contrast/figure``)."""


class ApiError(Exception):
    """A request the server refuses: an HTTP status and one line saying what was wrong and what to do."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = one_line(message)


@dataclass(frozen=True)
class ExplainRequest:
    """A checked ``/api/explain`` body; ``granularity`` is the one used (``"auto"`` resolved)."""

    text_a: str
    text_b: str
    method: str
    granularity: str
    model: str
    rules: str | None


@dataclass(frozen=True)
class FigureRequest:
    """A checked ``/api/figure`` body: the explanation and which file of it."""

    explain: ExplainRequest
    kind: str
    format: str


@dataclass(frozen=True)
class RankRequest:
    """A checked ``/api/rank`` body."""

    query: str
    top_k: int


@dataclass(frozen=True)
class ContrastRequest:
    """A checked ``/api/contrast`` body: why document ``a`` scores above (or below) ``b`` for ``query``."""

    query: str
    a: str
    b: str


@dataclass(frozen=True)
class RankFigureRequest:
    """A checked ``/api/rank/figure`` body: the file of one search result, document ``document_id`` for
    ``query``, as ``/api/rank`` explains it.
    """

    query: str
    document_id: str
    kind: str
    format: str


@dataclass(frozen=True)
class ContrastFigureRequest:
    """A checked ``/api/contrast/figure`` body: the file of one ``/api/contrast`` answer."""

    contrast: ContrastRequest
    format: str


# ---------------------------------------------------------------------------------------------- fields
def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"


def read_object(body: bytes, example: str) -> dict[str, Any]:
    """The JSON object of ``body``, or a 400 :class:`ApiError` (``example`` shows what to send)."""
    try:
        data = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise ApiError(400, f"the body is not UTF-8 text: send a JSON object such as {example}") from None
    except json.JSONDecodeError as error:
        where = f"line {error.lineno} column {error.colno}"
        raise ApiError(400, f"the body is not valid JSON ({error.msg} at {where}): send {example}") from None
    except RecursionError:
        raise ApiError(400, f"the body nests arrays or objects too deeply to be read: send {example}") from None
    except ValueError:  # Python's limit on the digits of an integer (sys.get_int_max_str_digits())
        raise ApiError(400, f"the body holds a number with too many digits to be read: send {example}") from None
    if not isinstance(data, dict):
        raise ApiError(400, f"the body is {_json_type(data)}, not a JSON object: send {example}")
    return data


def _text(data: Mapping[str, Any], name: str, limit: int, example: str) -> str:
    if name not in data:
        raise ApiError(400, f"{name} is missing: send {example}")
    value = data[name]
    if not isinstance(value, str):
        raise ApiError(400, f"{name} must be a string, not {_json_type(value)}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ApiError(400, f"{name} holds a lone surrogate escape (not Unicode text): send UTF-8 text") from None
    if not value.strip():
        raise ApiError(422, f"{name} is empty: give a text with at least one non-space character")
    if len(value) > limit:
        raise ApiError(
            422,
            f"{name} has {len(value)} characters, more than this server's limit of {limit}: shorten it "
            "(texts longer than the model's maximum are truncated anyway)",
        )
    return value


def _choice(data: Mapping[str, Any], name: str, choices: Sequence[str], default: str | None) -> str:
    value = data.get(name)
    if value is None:
        if default is None:
            raise ApiError(400, f"{name} is missing: choose one of {', '.join(choices)}")
        return default
    if not isinstance(value, str):
        raise ApiError(400, f"{name} must be a string, not {_json_type(value)}: choose one of {', '.join(choices)}")
    if value not in choices:
        raise ApiError(400, f"unknown {name} {value!r}: choose one of {', '.join(choices)}")
    return value


def _rules(data: Mapping[str, Any], method: str, default: str | None) -> str | None:
    value = data.get("rules")
    if value is None:
        return default if method == "bilrp" else None
    if not isinstance(value, str):
        raise ApiError(400, f"rules must be a string or null, not {_json_type(value)}")
    if method != "bilrp":
        raise ApiError(400, f"rules chooses BiLRP's rules; method {method!r} has none: send rules null")
    from ..rule_sets import parse_rule_set

    try:
        parse_rule_set(value)
    except ValueError as error:
        raise ApiError(400, str(error)) from None
    return value


def granularity_for(asked: str, text_a: str, text_b: str, settings: ServerSettings) -> str:
    """The granularity used: ``asked``, or for ``"auto"`` by the longer text's words: tokens up to
    ``auto_word_from`` words, words up to ``auto_sentence_from``, sentences beyond.
    """
    if asked != "auto":
        return asked
    words = max(len(text_a.split()), len(text_b.split()))
    if settings.auto_sentence_from is not None and words > settings.auto_sentence_from:
        return "sentence"
    return "word" if words > settings.auto_word_from else "token"


# ---------------------------------------------------------------------------------------------- routes
EXPLAIN_EXAMPLE = '{"text_a": "A man plays guitar.", "text_b": "Someone plays music."}'
RANK_EXAMPLE = '{"query": "a guitar player", "top_k": 5}'
CONTRAST_EXAMPLE = '{"query": "a guitar player", "a": "ID_A", "b": "ID_B"}'
RANK_FIGURE_EXAMPLE = '{"query": "a guitar player", "document_id": "ID", "kind": "pairs", "format": "png"}'
CONTRAST_FIGURE_EXAMPLE = CONTRAST_EXAMPLE[:-1] + ', "format": "png"}'


def parse_explain(data: Mapping[str, Any], models: Sequence[str], settings: ServerSettings) -> ExplainRequest:
    """Check an ``/api/explain`` body; ``models`` are the server's model names, the first the default."""
    text_a = _text(data, "text_a", settings.max_text_chars, EXPLAIN_EXAMPLE)
    text_b = _text(data, "text_b", settings.max_text_chars, EXPLAIN_EXAMPLE)
    method = _choice(data, "method", METHOD_NAMES, "bilrp")
    asked = _choice(data, "granularity", GRANULARITY_CHOICES, "auto")
    model = _choice(data, "model", list(models), models[0])
    rules = _rules(data, method, settings.rules)
    granularity = granularity_for(asked, text_a, text_b, settings)
    return ExplainRequest(text_a, text_b, method, granularity, model, rules)


def parse_figure(data: Mapping[str, Any], models: Sequence[str], settings: ServerSettings) -> FigureRequest:
    """Check an ``/api/figure`` body: an explain body plus ``kind`` and ``format``."""
    explain = parse_explain(data, models, settings)
    kind = _choice(data, "kind", FIGURE_KINDS, "pairs")
    format_ = _choice(data, "format", FIGURE_FORMATS, "png")
    return FigureRequest(explain, kind, format_)


def parse_rank(data: Mapping[str, Any], settings: ServerSettings) -> RankRequest:
    """Check an ``/api/rank`` body."""
    query = _text(data, "query", settings.max_text_chars, RANK_EXAMPLE)
    top_k = data.get("top_k", 5)
    if isinstance(top_k, bool) or not isinstance(top_k, int):
        raise ApiError(400, f"top_k must be a whole number, not {_json_type(top_k)}")
    if not 1 <= top_k <= settings.max_top_k:
        shown = top_k if abs(top_k) < 10**12 else f"a number of {len(str(abs(top_k)))} digits"
        raise ApiError(422, f"top_k is {shown}: give a whole number from 1 to {settings.max_top_k}")
    return RankRequest(query, top_k)


def _document_id(data: Mapping[str, Any], name: str, example: str) -> str:
    if name not in data:
        raise ApiError(400, f"{name} is missing: send {example}")
    value = data[name]
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ApiError(400, f"{name} must be a document id (a string), not {_json_type(value)}")
    return str(value)


def parse_contrast(data: Mapping[str, Any], settings: ServerSettings) -> ContrastRequest:
    """Check an ``/api/contrast`` body (the ids are checked against the index by the handler)."""
    return _contrast(data, settings, CONTRAST_EXAMPLE)


def _contrast(data: Mapping[str, Any], settings: ServerSettings, example: str) -> ContrastRequest:
    query = _text(data, "query", settings.max_text_chars, example)
    return ContrastRequest(query, _document_id(data, "a", example), _document_id(data, "b", example))


def parse_rank_figure(data: Mapping[str, Any], settings: ServerSettings) -> RankFigureRequest:
    """Check an ``/api/rank/figure`` body: ``query``, ``document_id``, ``kind`` and ``format``."""
    query = _text(data, "query", settings.max_text_chars, RANK_FIGURE_EXAMPLE)
    document_id = _document_id(data, "document_id", RANK_FIGURE_EXAMPLE)
    kind = _choice(data, "kind", FIGURE_KINDS, "pairs")
    return RankFigureRequest(query, document_id, kind, _choice(data, "format", FIGURE_FORMATS, "png"))


def parse_contrast_figure(data: Mapping[str, Any], settings: ServerSettings) -> ContrastFigureRequest:
    """Check an ``/api/contrast/figure`` body: a contrast body plus ``format`` (the picture has one kind)."""
    contrast = _contrast(data, settings, CONTRAST_FIGURE_EXAMPLE)
    return ContrastFigureRequest(contrast, _choice(data, "format", FIGURE_FORMATS, "png"))
