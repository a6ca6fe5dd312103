"""BiLRP: second-order LRP for bilinear similarity models (Eberle et al. 2022; Vasileiou & Eberle 2024)."""

from __future__ import annotations

from zennit.core import Composite

from ...engine import Mode, check_mode, token_contributions
from ...models.input_points import InputPoint
from ...rule_sets import choose_composite
from .pair_attribution import InteractionAttribution, PairSimilarityModel

__all__ = ["BiLRP"]


class BiLRP(InteractionAttribution):
    r"""Token-pair relevance of a similarity score by BiLRP.

    ``R[i, j] = sum_m LRP(phi_m, x_i) * LRP(phi'_m, x'_j)`` (divided by ``|phi| |phi'|`` for cosine), with
    the Transformer LRP rules of :class:`~bilrp.TransformerComposite`. ``R.sum() + delta`` equals the
    similarity; ``delta`` is the share of the biases (0 when all biases are zero).

    Every result is certified: the conservation certificate of the rule-frozen network
    (:mod:`bilrp.certificate`) runs in every mode and raises
    :class:`~bilrp.certificate.CertificateError`, naming the module at fault, when the relevance would
    not be exact for the rules.

    Parameters
    ----------
    forward_func
        A :class:`~bilrp.SimilarityModel` (or any module with ``represent``/``compare``/``similarity``).
    composite
        The rules as a composite: a :class:`~bilrp.TransformerComposite`, or a zennit composite
        (``EpsilonPlus``, ...), translated to bilrp's forward-graph rules when that is exact and refused
        otherwise (:func:`~bilrp.composites.resolve_composite`).
    mode
        Engine mode (see :mod:`bilrp.engine`): ``"auto"`` (replay of the frozen rule constants while the
        engine's cost model says it is cheaper, ``seq + 2 <= 3 + 0.75 dim``, else reverse mode),
        ``"replay"``, ``"forward"`` or ``"reverse"``. All modes give the same relevance.
    certify
        Run the certificate (default). ``False`` skips it, for measuring its cost only: the result is then
        not checked.
    rules
        The rules by name instead (:mod:`bilrp.rule_sets`): ``"paper"`` (the paper's AH + LRP-0),
        ``"epsilon=0.1"``, ``"gamma"``, ``"attnlrp"``, ``"attnlrp-epsilon"``. With neither ``composite`` nor
        ``rules``, the model family's default rule set (``docs/results.md`` gives the evidence).
    attribute_to
        The input point: ``"embedding_output"`` (default) or ``"inputs_embeds"`` (HuggingFace's word
        embeddings; the embedding module's positions and LayerNorm are then explained too, under their rules and
        the certificate). See :class:`~bilrp.attr.PairAttribution`.

    Attributes
    ----------
    rules
        The rule-set name in use (``"custom"`` when a composite was given).

    """

    name = "BiLRP"

    def __init__(
        self,
        forward_func: PairSimilarityModel,
        composite: Composite | None = None,
        mode: Mode = "auto",
        certify: bool = True,
        rules: str | None = None,
        *,
        attribute_to: InputPoint = "embedding_output",
    ) -> None:
        super().__init__(forward_func, attribute_to)
        self.composite, self.rules = choose_composite(composite, rules, self.forward_func)
        self.mode = check_mode(mode)
        self.certify = bool(certify)

    def _factor(self, embeddings, mask, internal_batch_size, baseline, groups=None):
        """First-order LRP of every embedding dimension on every token, ``(batch, seq, dim)``, and ``phi``."""
        with self.composite.context(self.forward_func):
            return token_contributions(
                self.forward_func.represent,
                embeddings,
                mask,
                mode=self.mode,
                chunk_size=internal_batch_size,
                rules=True,
                certify=self.certify,
                model=self.forward_func,
                groups=groups,
                memory_factor=self.composite.memory_factor,
            )

    def bias_vectors(self, embeddings, mask, contributions, phi, baseline=None):
        """``phi - sum_i C[i]``: the bias-only output of the rule-frozen network (certified to equal it)."""
        return phi - contributions.sum(1)
