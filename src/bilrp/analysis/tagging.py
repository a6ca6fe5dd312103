"""Part-of-speech taggers that give universal POS tags (UPOS) as character spans of the text.

English uses spaCy's ``en_core_web_sm`` (via :func:`bilrp.nlp.load_spacy`). German has no spaCy
model on PyPI, so it uses spaCy's rule-based German tokenizer with the Hanover Tagger (PyPI ``hanta``, a
pure-Python HMM tagger with a German model inside the package) and maps its STTS tags to UPOS. Any other
language raises :class:`TaggerUnavailableError`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

__all__ = [
    "TaggedSpan",
    "Tagger",
    "SpacyTagger",
    "HanTaTagger",
    "TaggerUnavailableError",
    "hanta_model_file",
    "load_tagger",
    "stts_to_upos",
    "UPOS_TAGS",
]

UPOS_TAGS = (
    "NOUN",
    "PROPN",
    "VERB",
    "AUX",
    "ADJ",
    "ADV",
    "PRON",
    "DET",
    "ADP",
    "NUM",
    "CCONJ",
    "SCONJ",
    "PART",
    "INTJ",
    "PUNCT",
    "SYM",
    "X",
    "SPACE",
)

_STTS_TO_UPOS = {
    "ADJA": "ADJ",
    "ADJD": "ADJ",
    "ADV": "ADV",
    "APPO": "ADP",
    "APPR": "ADP",
    "APPRART": "ADP",
    "APZR": "ADP",
    "ART": "DET",
    "CARD": "NUM",
    "FM": "X",
    "ITJ": "INTJ",
    "KOKOM": "CCONJ",
    "KON": "CCONJ",
    "KOUI": "SCONJ",
    "KOUS": "SCONJ",
    "NE": "PROPN",
    "NN": "NOUN",
    "NNE": "PROPN",
    "PAV": "ADV",
    "PROAV": "ADV",
    "PDAT": "DET",
    "PDS": "PRON",
    "PIAT": "DET",
    "PIDAT": "DET",
    "PIS": "PRON",
    "PPER": "PRON",
    "PPOSAT": "DET",
    "PPOSS": "PRON",
    "PRELAT": "DET",
    "PRELS": "PRON",
    "PRF": "PRON",
    "PTKA": "PART",
    "PTKANT": "PART",
    "PTKNEG": "PART",
    "PTKVZ": "ADP",
    "PTKZU": "PART",
    "PWAT": "DET",
    "PWAV": "ADV",
    "PWS": "PRON",
    "TRUNC": "X",
    "XY": "X",
}


class TaggerUnavailableError(ValueError):
    """No POS tagger can be loaded for a language here."""


@dataclass(frozen=True)
class TaggedSpan:
    """A tagged token of a text: characters ``text[start:end]`` with universal POS tag ``tag``."""

    start: int
    end: int
    tag: str


class Tagger:
    """Universal POS tags of texts as character spans, with a per-text cache.

    Subclasses implement :meth:`_tag_batch`; ``language`` names the language the tagger is for.
    """

    language: str = ""
    name: str = ""

    def __init__(self) -> None:
        self._cache: dict[str, list[TaggedSpan]] = {}

    def __call__(self, text: str) -> list[TaggedSpan]:
        """The tagged spans of one text."""
        return self.tag_many([text])[0]

    def tag_many(self, texts: Iterable[str]) -> list[list[TaggedSpan]]:
        """The tagged spans of each text (each distinct text is tagged once)."""
        texts = list(texts)
        missing = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if missing:
            self._cache.update(zip(missing, self._tag_batch(missing), strict=True))
        return [self._cache[t] for t in texts]

    def _tag_batch(self, texts: Sequence[str]) -> list[list[TaggedSpan]]:
        raise NotImplementedError


class SpacyTagger(Tagger):
    """Tags from a spaCy pipeline (``token.pos_``); components other than the tagger's are switched off.

    Parameters
    ----------
    nlp
        A loaded ``spacy.Language`` that sets ``pos_``.
    language
        Language code reported by :attr:`language` (default: ``nlp.lang``).

    """

    def __init__(self, nlp, language: str | None = None) -> None:
        super().__init__()
        self.nlp = nlp
        self.language = language or nlp.lang
        self.name = f"spacy:{nlp.lang}_{nlp.meta.get('name', '')}-{nlp.meta.get('version', '')}"
        self._disabled = [name for name in ("parser", "ner", "lemmatizer") if name in nlp.pipe_names]

    def _tag_batch(self, texts: Sequence[str]) -> list[list[TaggedSpan]]:
        docs = self.nlp.pipe(texts, batch_size=64, disable=self._disabled)
        return [[TaggedSpan(t.idx, t.idx + len(t.text), t.pos_ or "X") for t in doc if not t.is_space] for doc in docs]


def stts_to_upos(tag: str) -> str:
    """Universal POS tag of an STTS tag (also HanTa's forms such as ``VV(FIN)`` and ``ADJ(A)``)."""
    plain = re.sub(r"[()]", "", tag)
    if plain in _STTS_TO_UPOS:
        return _STTS_TO_UPOS[plain]
    if plain.startswith("$"):
        return "PUNCT"
    if plain.startswith(("VA", "VM")):
        return "AUX"
    if plain.startswith("VV"):
        return "VERB"
    return "X"


class HanTaTagger(Tagger):
    """German tags: spaCy's rule-based German tokenizer, then the Hanover Tagger (STTS mapped to UPOS).

    Needs the PyPI package ``hanta`` (LGPL-3.0); the German model ships inside it.
    """

    language = "de"
    name = "hanta:morphmodel_ger"

    def __init__(self) -> None:
        super().__init__()
        import spacy

        try:
            from HanTa import HanoverTagger
        except ImportError as error:
            raise TaggerUnavailableError(
                "German POS tags need the Hanover Tagger: pip install hanta (no German spaCy model is on PyPI)"
            ) from error
        self.tokenizer = spacy.blank("de").tokenizer
        self.model_file = hanta_model_file(HanoverTagger)
        self.tagger = HanoverTagger.HanoverTagger(str(self.model_file))

    def _tag_batch(self, texts: Sequence[str]) -> list[list[TaggedSpan]]:
        results = []
        for text in texts:
            tokens = [t for t in self.tokenizer(text) if not t.is_space]
            tags = self.tagger.tag_sent([t.text for t in tokens], taglevel=1) if tokens else []
            spans = [
                TaggedSpan(t.idx, t.idx + len(t.text), stts_to_upos(tag[-1]))
                for t, tag in zip(tokens, tags, strict=True)
            ]
            results.append(spans)
        return results


def hanta_model_file(hanover_tagger: ModuleType, name: str = "morphmodel_ger.pgz") -> Path:
    """The absolute path of a HanTa model inside the installed ``HanTa`` package.

    HanTa unpickles the file it is given and looks for a bare name in the working directory first, so a file
    of that name planted there would run code: the tagger is only ever given this absolute path.
    """
    file = Path(hanover_tagger.__file__).resolve().with_name(name)
    if not file.is_file():
        raise TaggerUnavailableError(
            f"the HanTa package lacks its model {str(file)!r}: reinstall it (pip install hanta)"
        )
    return file


@functools.cache
def load_tagger(language: str) -> Tagger:
    """The POS tagger for a language code: ``"en"`` (spaCy) or ``"de"`` (HanTa); cached.

    Raises
    ------
    TaggerUnavailableError
        For a language without an installable tagger here (e.g. ``"es"``, ``"fr"``).

    """
    if language == "de":
        return HanTaTagger()
    if language == "en":
        from ..nlp import SpacyModelError, load_spacy

        try:
            return SpacyTagger(load_spacy("en"), "en")
        except SpacyModelError as error:
            raise TaggerUnavailableError(str(error)) from error
    raise TaggerUnavailableError(
        f"no POS tagger for language {language!r}: available are 'en' (spaCy) and 'de' (HanTa)"
    )
