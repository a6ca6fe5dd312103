"""Model families, one module each, registered in :data:`ARCHITECTURES` (see :mod:`.registry`).

Importing this package registers every family shipped with bilrp. Adding a family is one module with
one :func:`register_architecture` call (``docs/custom_architectures.md``).
"""

from . import bert, distilbert, eurobert, gemma, gpt_neo, gte, llama, modernbert, mpnet, nomic_bert, qwen, roberta, t5
from .bert import BertCanonizer
from .distilbert import DistilBertCanonizer
from .gpt_neo import GPTNeoCanonizer
from .mpnet import MPNetCanonizer
from .registry import (
    ARCHITECTURES,
    Architecture,
    ArchitectureCanonizer,
    GatedMLP,
    architecture_of,
    register_architecture,
)
from .roberta import RobertaCanonizer
from .torch import (
    InputProjection,
    MultiheadAttentionCanonizer,
    TorchTransformerCanonizer,
    TransformerEncoderLayerCanonizer,
    ValueProjection,
)

__all__ = [
    "ARCHITECTURES",
    "Architecture",
    "ArchitectureCanonizer",
    "GatedMLP",
    "register_architecture",
    "architecture_of",
    "TransformerCanonizer",
    "BertCanonizer",
    "RobertaCanonizer",
    "MPNetCanonizer",
    "DistilBertCanonizer",
    "GPTNeoCanonizer",
    "TorchTransformerCanonizer",
    "MultiheadAttentionCanonizer",
    "TransformerEncoderLayerCanonizer",
    "InputProjection",
    "ValueProjection",
    "architecture_table",
]
_FAMILY_MODULES = (
    bert,
    distilbert,
    eurobert,
    gemma,
    gpt_neo,
    gte,
    llama,
    modernbert,
    mpnet,
    nomic_bert,
    qwen,
    roberta,
    t5,
)


class TransformerCanonizer(ArchitectureCanonizer):
    """Every registered family at once (the default of :class:`~bilrp.TransformerComposite`)."""


def architecture_table() -> str:
    """The Markdown table of the registered families (``docs/architectures.md`` is generated from it)."""
    rows = [
        "| family | example checkpoints | attention (rule AH) | norm (rule LN) | feed-forward | pooling "
        "| default rules |",
        "|---|---|---|---|---|---|---|",
    ]
    for entry in ARCHITECTURES.values():
        if not entry.models:  # not a model family (bilrp's QKV pooling registers its rule here too)
            continue
        attention = ", ".join(
            f"`{a.rsplit(':', 1)[-1] if isinstance(a, str) else a.__name__}`" for a in entry.attention
        )
        checkpoints = ", ".join(f"`{c}`" for c in entry.checkpoints) or "(your own)"
        rows.append(
            f"| {entry.name} | {checkpoints} | {attention or '`nn.MultiheadAttention`'} | {entry.norm} | "
            f"{entry.mlp} | {entry.pooling} | `{entry.rules}` |"
        )
    return "\n".join(rows) + "\n"
