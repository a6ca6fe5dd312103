"""The layers of bilrp: data flows one way, and nothing lower imports anything higher, not even inside a function.

Every module of ``src/bilrp`` belongs to one layer of :data:`LAYERS` (lowest first, by its top-level name; a
``cli`` module belongs to the command line, whatever package holds it). A module may import its own layer and
the layers below. Imports for type checkers only (``if TYPE_CHECKING:``) are annotations, not data flow, and are
not counted. A new top-level module must be given a layer here, so it is placed deliberately.
"""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "bilrp"

LAYERS = (
    (
        "base",
        {
            "_catalog",
            "_validation",
            "_io",
            "_integrity",
            "explaining",
            "constants",
            "token_display",
            "eval_eager",
            "_display",
            "_quiet",
        },
    ),
    ("rules", {"rules", "attention_rules", "linear_rules", "rule_translation"}),
    ("canonizers and architectures", {"canonizers", "gated_mlp", "linear_canonizer", "architectures"}),
    ("models", {"models"}),
    ("composites", {"certificate", "root_rule", "composites", "rule_sets"}),
    ("engine", {"engine_cost", "engine"}),
    ("attributions", {"attr"}),
    (
        "explain and Explanation",
        {"explanation", "granularity", "granular", "text_encoding", "explainer", "datasets", "nlp"},
    ),
    ("corpus runs", {"corpus_runs"}),
    ("evaluation, analysis and ranking", {"evaluation", "analysis", "ranking"}),
    ("pictures, command line and explorer", {"plotting", "cli", "_cli_support", "server", "__main__", "__init__"}),
)


def layer_of(module: str) -> int:
    """The position in :data:`LAYERS` of a dotted module name relative to ``bilrp`` (``"ranking.cli"``)."""
    parts = module.split(".")
    name = "cli" if parts[-1] == "cli" else parts[0]
    for number, (_, names) in enumerate(LAYERS):
        if name in names:
            return number
    raise AssertionError(f"bilrp.{module} has no layer: add {name!r} to LAYERS in {Path(__file__).name}")


def _modules():
    for file in sorted(SRC.rglob("*.py")):
        parts = file.relative_to(SRC).with_suffix("").parts
        package = parts[:-1] if parts[-1] != "__init__" else parts[:-1]
        name = ".".join(parts[:-1] if parts[-1] == "__init__" and len(parts) > 1 else parts)
        yield name, package, file


def _type_checking_only(tree: ast.Module) -> set[int]:
    """Ids of the import nodes inside ``if TYPE_CHECKING:`` blocks."""
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            ids |= {id(inner) for statement in node.body for inner in ast.walk(statement)}
    return ids


def imported_modules(package: tuple[str, ...], tree: ast.Module) -> list[tuple[str, int]]:
    """The bilrp modules ``tree`` imports (relative to ``bilrp``), with line numbers; annotations excluded."""
    skipped = _type_checking_only(tree)
    found = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(package[: len(package) - node.level + 1])
                targets = (
                    [".".join(base + [node.module])] if node.module else [".".join(base + [a.name]) for a in node.names]
                )
            elif (node.module or "").startswith("bilrp."):
                targets = [node.module.removeprefix("bilrp.")]
            else:
                continue
            found += [(target, node.lineno) for target in targets if target]
        elif isinstance(node, ast.Import):
            found += [(a.name.removeprefix("bilrp."), node.lineno) for a in node.names if a.name.startswith("bilrp.")]
    return found


def test_every_module_has_a_layer():
    for name, _, _ in _modules():
        layer_of(name or "__init__")


def test_nothing_lower_imports_anything_higher():
    upward = []
    for name, package, file in _modules():
        own = layer_of(name or "__init__")
        for target, line in imported_modules(package, ast.parse(file.read_text(encoding="utf-8"))):
            if layer_of(target) > own:
                upward.append(
                    f"{file.relative_to(SRC.parent)}:{line} ({LAYERS[own][0]}) imports bilrp.{target} "
                    f"({LAYERS[layer_of(target)][0]})"
                )
    assert not upward, "\n".join(upward)


@pytest.mark.parametrize(
    "source, expected", [("from ..plotting import plot_pairs", ["plotting"]), ("from . import cli", ["ranking.cli"])]
)
def test_the_import_reader_resolves_relative_imports(source, expected):
    assert [target for target, _ in imported_modules(("ranking",), ast.parse(source))] == expected


def test_the_check_fails_on_an_upward_import():
    tree = ast.parse("def f():\n    from .plotting import plot_pairs\n")
    ((target, _),) = imported_modules((), tree)
    assert layer_of(target) > layer_of("explanation")
