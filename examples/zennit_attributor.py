"""zennit's attributors with bilrp's ``TransformerComposite``: the zennit user's first script, no adapter.

1. ``Gradient(model, TransformerComposite())`` returns relevance, as zennit's own composites do: with zennit's
   default ``attr_output`` (the output itself) it adds up to the score less the bias share, and every call
   is certified (the rule-frozen model is proven affine on that input).
2. One loop over ``[EpsilonPlus(), TransformerComposite()]`` gives the same kind of number for both. zennit's
   ``EpsilonPlus`` has no rule for LayerNorm, so on BERT (whose input meets a LayerNorm first) its relevance
   sums to about 0, whatever the score.
3. A block no rule covers (here a hand-written softmax attention) is refused with one line naming it.

Run: ``python examples/zennit_attributor.py`` (random weights: the point is the mechanics; about 2 s).
"""

import math

import torch
from torch import nn
from transformers import BertConfig, BertModel
from zennit.attribution import Gradient
from zennit.composites import EpsilonPlus

from bilrp import CertificateError, TransformerComposite

WORDS = "a man plays a guitar on the street".split()


class Scorer(nn.Module):
    """Your model: a (tiny, random) BERT from the embedding output to one score per text."""

    def __init__(self, dim: int = 32) -> None:
        super().__init__()
        config = BertConfig(vocab_size=100, hidden_size=dim, num_hidden_layers=2, num_attention_heads=4)
        self.bert = BertModel(config, add_pooling_layer=False)
        self.readout = nn.Linear(dim, 1)

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        return self.readout(self.bert(inputs_embeds=embeddings).last_hidden_state.mean(1)).squeeze(-1)


class HandWrittenAttention(nn.Module):
    """Self-attention with the softmax written inline: bilrp has no rule for it."""

    def __init__(self, dim: int = 32) -> None:
        super().__init__()
        self.qkv, self.out = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        return self.out((q @ k.transpose(-1, -2) / math.sqrt(x.shape[-1])).softmax(-1) @ v)


class OwnScorer(nn.Module):
    def __init__(self, dim: int = 32) -> None:
        super().__init__()
        self.attention, self.norm, self.readout = HandWrittenAttention(dim), nn.LayerNorm(dim), nn.Linear(dim, 1)

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        return self.readout(self.norm(embeddings + self.attention(embeddings)).mean(1)).squeeze(-1)


def main() -> None:
    torch.manual_seed(0)
    model = Scorer().double().eval()
    embeddings = torch.randn(1, len(WORDS), 32, dtype=torch.float64)  # your embedding layer's output

    # 1. relevance per token, certified; zennit's default attr_output is the output itself
    with Gradient(model, TransformerComposite()) as attributor:
        score, relevance = attributor(embeddings)
    for word, value in zip(WORDS, relevance[0].sum(-1).tolist(), strict=True):
        print(f"  {word:<8} {value:+.6f}")
    total = relevance.sum().item()
    print(f"score {score.item():+.6f} = sum of relevance {total:+.6f} + bias share {score.item() - total:+.6f}")

    # 2. one loop, one kind of output: relevance
    for composite in [EpsilonPlus(), TransformerComposite()]:
        with Gradient(model, composite) as attributor:
            score, relevance = attributor(embeddings)
        print(
            f"{type(composite).__name__:<20} sum of relevance {relevance.sum().item():+.6f} (score {score.item():+.6f})"
        )

    # 3. a block without a rule is refused, naming it
    try:
        Gradient(OwnScorer().double().eval(), TransformerComposite())(embeddings)
    except CertificateError as refused:
        print(f"refused: {refused}")


if __name__ == "__main__":
    main()
