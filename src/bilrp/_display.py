"""How result objects show themselves in Jupyter without importing the pictures (a registry of renderers).

:class:`~bilrp.Explanation`, :class:`~bilrp.ranking.Ranking` and :class:`~bilrp.ranking.Difference` sit below the
pictures and never import them (``tests/test_layers.py``). They define ``_repr_mimebundle_`` and ``_repr_html_``,
which ask this registry for their rich forms. The pictures layer registers one renderer per result type
(:mod:`bilrp.plotting.notebook`: the HTML view and a PNG picture), and the top package ``bilrp`` registers a
*loader* that imports it: the pictures are imported on the first rich display, never by ``import bilrp``, and
the dependency points downwards (the pictures hand their renderers to this module, not the other way round).

A renderer is ``renderer(obj, wanted) -> {mime type: data}`` where ``wanted`` is the set of mime types asked
for (``text/html``, ``image/png``); binary data is base64 text, as Jupyter's display protocol expects. The
plain-text form is always ``repr(obj)``, which each result class keeps short (no tensor dump).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

__all__ = ["RICH_TYPES", "Renderer", "register_display", "register_loader", "mimebundle", "html", "quoted"]

RICH_TYPES = ("text/html", "image/png")
"""The mime types a renderer gives, besides ``text/plain`` (``repr``)."""

Renderer = Callable[[Any, frozenset[str]], dict[str, Any]]
"""``renderer(obj, wanted) -> {mime type: data}`` for the ``wanted`` mime types."""

_RENDERERS: dict[str, Renderer] = {}
_LOADERS: list[Callable[[], None]] = []


def type_name(cls: type) -> str:
    """``"module.QualifiedName"`` of a class: the key a renderer is registered under."""
    return f"{cls.__module__}.{cls.__qualname__}"


def register_display(name: str, renderer: Renderer) -> None:
    """Show objects of the class named ``name`` (``"bilrp.explanation.Explanation"``) and its subclasses with
    ``renderer``; registering a name again replaces its renderer.
    """
    if not callable(renderer):
        raise TypeError(f"the renderer of {name} is {type(renderer).__name__}, not a function (obj, wanted) -> dict")
    _RENDERERS[name] = renderer


def register_loader(loader: Callable[[], None]) -> None:
    """Call ``loader()`` (once) the first time an object with no registered renderer is displayed.

    The top package uses it to import the pictures' renderers only when a notebook first shows a result.
    """
    _LOADERS.append(loader)


def _renderer_for(cls: type) -> Renderer | None:
    for attempt in range(2):
        for klass in cls.__mro__:
            renderer = _RENDERERS.get(type_name(klass))
            if renderer is not None:
                return renderer
        if attempt == 0:
            while _LOADERS:
                _LOADERS.pop(0)()
    return None


def mimebundle(
    obj: Any, include: Collection[str] | None = None, exclude: Collection[str] | None = None
) -> dict[str, Any] | None:
    """The rich forms of ``obj`` (IPython's ``_repr_mimebundle_``), ``text/plain`` included, or ``None`` when no
    renderer is registered for its class (then Jupyter shows ``repr(obj)``).

    ``include`` and ``exclude`` are IPython's: only the mime types asked for are computed.
    """
    renderer = _renderer_for(type(obj))
    if renderer is None:
        return None
    wanted = frozenset(t for t in RICH_TYPES if (not include or t in include) and not (exclude and t in exclude))
    bundle = dict(renderer(obj, wanted)) if wanted else {}
    if (not include or "text/plain" in include) and not (exclude and "text/plain" in exclude):
        bundle["text/plain"] = repr(obj)
    return bundle


def html(obj: Any) -> str | None:
    """The HTML form of ``obj`` (``_repr_html_``), or ``None`` when no renderer is registered for its class."""
    bundle = mimebundle(obj, include=("text/html",))
    return None if bundle is None else bundle.get("text/html")


def quoted(text: str, limit: int = 40) -> str:
    """``repr`` of ``text`` with its whitespace runs as one space, cut to ``limit`` characters (for short reprs)."""
    flat = " ".join(str(text).split())
    return repr(flat if len(flat) <= limit else flat[: limit - 3] + "...")
