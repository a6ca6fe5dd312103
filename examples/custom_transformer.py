"""Explain your own PyTorch Transformer with zennit and bilrp's ``TransformerComposite``.

The model is a small sentence scorer built on ``nn.TransformerEncoder``: token + position embeddings,
two encoder layers, mean pooling over the real tokens and a linear read-out. Nothing in it knows about
bilrp. ``zennit.attribution.Gradient(model, TransformerComposite())`` returns the relevance of the embedding
output under the Transformer LRP rules (AH, LN, GA, LRP-0), as zennit's own composites do, certified on every
call; summed over the hidden units it is one number per token. With all biases zeroed the relevance sums
exactly to the score (conservation).

Run: ``python examples/custom_transformer.py`` (weights are random: the point is the mechanics).
"""

import copy

import torch
from torch import nn
from zennit.attribution import Gradient

from bilrp import TransformerComposite

SENTENCES = ["a man plays a guitar on the street", "dogs run in the park"]


class SentenceScorer(nn.Module):
    """Token + position embeddings, an ``nn.TransformerEncoder``, mean pooling and a linear read-out."""

    def __init__(self, vocab_size: int, dim: int = 32, heads: int = 4, layers: int = 2) -> None:
        super().__init__()
        self.tokens = nn.Embedding(vocab_size, dim)
        self.positions = nn.Embedding(64, dim)
        layer = nn.TransformerEncoderLayer(dim, heads, 4 * dim, dropout=0.1, activation="gelu", batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, norm=nn.LayerNorm(dim), enable_nested_tensor=False)
        self.readout = nn.Linear(dim, 1)

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """The embedding output: the input of the first Transformer layer (what relevance is computed on)."""
        return self.tokens(ids) + self.positions(torch.arange(ids.shape[1]))

    def forward(self, embeddings: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """One score per sentence; ``mask`` is 1 for real tokens, 0 for padding."""
        hidden = self.encoder(embeddings, src_key_padding_mask=mask == 0)
        weights = mask[..., None].to(hidden.dtype)
        pooled = (hidden * weights).sum(1) / weights.sum(1)
        return self.readout(pooled).squeeze(-1)


class Masked(nn.Module):
    """Binds the padding mask, so that zennit's attributors can call the model with the embeddings alone."""

    def __init__(self, model: SentenceScorer, mask: torch.Tensor) -> None:
        super().__init__()
        self.model, self.mask = model, mask

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        return self.model(embeddings, self.mask)


def tokenize(sentences: list[str], vocabulary: dict[str, int]) -> tuple[list[list[str]], torch.Tensor, torch.Tensor]:
    words = [sentence.split() for sentence in sentences]
    length = max(len(w) for w in words)
    ids = torch.tensor([[vocabulary[t] for t in w] + [0] * (length - len(w)) for w in words])
    mask = torch.tensor([[1] * len(w) + [0] * (length - len(w)) for w in words])
    return words, ids, mask


def relevance(model: SentenceScorer, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores and per-token relevance (of the embedding output, summed over the hidden units)."""
    embeddings = model.embed(ids).detach()
    # zennit's default attr_output is the output itself: the relevance is in score units
    with Gradient(Masked(model, mask), TransformerComposite()) as attributor:
        scores, attribution = attributor(embeddings)
    return scores.detach(), attribution.sum(-1)


def main() -> None:
    torch.manual_seed(0)
    vocabulary = {"<pad>": 0}
    for word in " ".join(SENTENCES).split():
        vocabulary.setdefault(word, len(vocabulary))
    model = SentenceScorer(len(vocabulary)).double().eval()
    with torch.no_grad():  # random biases, so that the bias share below is visible
        for name, parameter in model.named_parameters():
            if name.endswith("bias"):
                parameter.normal_(0.0, 0.1)
    words, ids, mask = tokenize(SENTENCES, vocabulary)

    scores, token_relevance = relevance(model, ids, mask)
    for row, sentence in enumerate(words):
        print(f"sentence {row + 1}: score={scores[row].item():+.6f}")
        for position, word in enumerate(sentence):
            print(f"  {word:<10} {token_relevance[row, position].item():+.6f}")
        total = token_relevance[row].sum().item()
        print(f"  sum of relevance {total:+.6f}, bias share {scores[row].item() - total:+.6f}")

    unbiased = copy.deepcopy(model)
    with torch.no_grad():
        for name, parameter in unbiased.named_parameters():
            if name.endswith("bias"):
                parameter.zero_()
    scores, token_relevance = relevance(unbiased, ids, mask)
    totals = token_relevance.sum(-1)
    error = ((totals - scores).abs().max() / scores.abs().max()).item()
    print(f"conservation with biases zeroed: relative error={error:.1e}")
    print(f"  sums of relevance {totals.tolist()}\n  scores            {scores.tolist()}")


if __name__ == "__main__":
    main()
