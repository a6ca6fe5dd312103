"""Start-up: ``import bilrp`` and the ``--help`` of every command import no torch; the lazy exports all work."""

import ast
import importlib
import importlib.metadata
import subprocess
import sys
from pathlib import Path

import pytest

import bilrp
from bilrp import _catalog

HEAVY = (
    "torch",
    "zennit",
    "captum",
    "transformers",
    "torchvision",
    "matplotlib",
    "scipy",
    "spacy",
    "fastapi",
    "starlette",
    "uvicorn",
    "ray",
    "pyarrow",
)

HELP_SCRIPT = """
import sys
from bilrp.cli import main
for argv in {argvs!r}:
    try:
        main(argv)
    except SystemExit as exit_:
        assert exit_.code == 0, (argv, exit_.code)
print("HEAVY", sorted(name for name in {heavy!r} if name in sys.modules), file=sys.stderr)
"""


def python(*args):
    result = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def imported_modules(importtime_log):
    """The top-level modules named in a ``python -X importtime`` log."""
    lines = [line.split("|")[-1].strip() for line in importtime_log.splitlines() if line.startswith("import time:")]
    return {name.split(".")[0] for name in lines}


def test_import_bilrp_imports_no_heavy_library():
    code = f"import sys, bilrp; print(bilrp.__version__, sorted(n for n in {HEAVY!r} if n in sys.modules))"
    assert python("-c", code).stdout.split(maxsplit=1) == [bilrp.__version__, "[]\n"]


def test_help_of_every_command_imports_no_heavy_library():
    argvs = [
        ["--help"],
        ["explain", "--help"],
        ["evaluate", "--help"],
        ["evaluate", "ground-truth", "--help"],
        ["analyze", "--help"],
        ["analyze", "quantiles", "--help"],
        ["index", "--help"],
        ["rank", "--help"],
        ["serve", "--help"],
        ["--version"],
    ]
    stderr = python("-c", HELP_SCRIPT.format(argvs=argvs, heavy=HEAVY)).stderr
    assert stderr.splitlines()[-1] == "HEAVY []"


@pytest.mark.parametrize(
    ("argv", "shown"),
    [(["--help"], "evaluate"), (["explain", "--help"], "--method {bilrp,hxp,embedding,random,ij}")],
)
def test_python_m_bilrp_help_does_not_import_torch(argv, shown):
    result = python("-X", "importtime", "-m", "bilrp", *argv)
    assert result.stdout.startswith("usage: bilrp") and shown in result.stdout
    modules = imported_modules(result.stderr)
    assert {"bilrp", "argparse"} <= modules  # the log was read
    assert not modules & set(HEAVY), sorted(modules & set(HEAVY))


def test_the_catalog_names_what_the_modules_implement():
    assert _catalog.METHOD_NAMES == tuple(bilrp.METHODS)
    assert _catalog.POOLING_NAMES == tuple(bilrp.models.POOLINGS)
    assert _catalog.SIMILARITY_NAMES == tuple(bilrp.models.SIMILARITIES)
    assert _catalog.DEFAULT_MODEL == bilrp.DEFAULT_MODEL
    assert bilrp.__version__ == _catalog.VERSION == importlib.metadata.version("bilrp")


EXPORTED = [
    "DEFAULT_MODEL", "METHODS", "SimilarityModel", "TransformerComposite", "UnsupportedModuleError", "LRP", "BiLRP",
    "HessianXProduct", "EmbeddingInteraction", "RandomInteraction", "IntegratedJacobians", "Explanation", "explain",
    "explain_batch", "__version__", "NonlinearityError", "ModelLoadError", "DocumentIndex", "explain_ranking",
    "explain_difference",
]  # fmt: skip


def test_every_public_name_is_exported_lazily_and_listed():
    assert set(EXPORTED) <= set(bilrp.__all__) and set(bilrp.__all__) <= set(dir(bilrp))
    namespace = {}
    exec(f"from bilrp import {', '.join(EXPORTED)}", namespace)
    assert all(namespace[name] is getattr(bilrp, name) for name in EXPORTED)
    assert bilrp.BiLRP.__module__.startswith("bilrp.attr") and callable(bilrp.explain)
    assert bilrp.datasets.load is importlib.import_module("bilrp.datasets").load  # submodules on first use too
    with pytest.raises(AttributeError, match="module 'bilrp' has no attribute 'no_such_name'"):
        bilrp.no_such_name  # noqa: B018


def test_subpackages_export_lazily_too():
    import bilrp.analysis
    import bilrp.evaluation

    for package in (bilrp.analysis, bilrp.evaluation):
        assert set(package.__all__) <= set(dir(package))
        assert all(getattr(package, name) is not None for name in package.__all__)


@pytest.mark.parametrize("package", ["bilrp", "bilrp.evaluation", "bilrp.analysis", "bilrp.ranking", "bilrp.server"])
def test_the_static_imports_for_type_checkers_match_the_export_table(package):
    module = importlib.import_module(package)
    tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))
    block = next(node for node in tree.body if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING")
    static = {
        alias.asname or alias.name: f"{'.' * node.level}{node.module}:{alias.name}"
        for node in block.body
        for alias in node.names
    }
    assert static == module._EXPORTS
