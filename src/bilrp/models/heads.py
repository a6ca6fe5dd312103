"""Modules applied to the pooled embedding (a similarity model's ``head``): sentence-transformers' ``Dense``,
``Normalize`` and ``truncate_dim``.

Each is an ordinary module computing what sentence-transformers computes, so plain gradients (H x P,
Integrated Jacobians) see the true function. Under the LRP rules they are exact as follows:

- :class:`DenseLayer`: ``nn.Linear`` (LRP-0 or the composite's linear rule) and its activation module, which
  :class:`~bilrp.canonizers.ActivationCanonizer` makes proportional (rule GA; ``nn.Tanh`` is the Dense
  default). An activation without a rule (``nn.Sigmoid``, a plain function) makes the conservation
  certificate refuse the explanation, naming the module.
- :class:`L2Normalize`: ``x / |x|`` written as an ``nn.RMSNorm`` child times ``1 / sqrt(dim)``; under the
  rules the RMS normalisation holds its norm constant (rule LN, ``scale_by_constant(..., divide=True)``).
- :class:`TruncateDim`: the first ``dim`` dimensions (Matryoshka), linear.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

__all__ = ["DenseLayer", "Activation", "L2Normalize", "TruncateDim", "NORMALIZE_FLOOR"]

NORMALIZE_FLOOR = 1e-12
"""Norms below this are not divided by (``torch.nn.functional.normalize``'s ``eps``)."""


class Activation(nn.Module):
    """An activation given as a plain function, as a module (so that the certificate can name it).

    No rule covers an arbitrary function: unless it is linear, the certificate refuses the explanation.
    """

    def __init__(self, function: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.function = function

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.function(x)

    def extra_repr(self) -> str:
        return getattr(self.function, "__qualname__", repr(self.function))


class DenseLayer(nn.Module):
    """``activation(linear(x))``, plus ``x`` or ``residual(x)`` with ``use_residual``: sentence-transformers' Dense.

    The attribute names are those of sentence-transformers' ``Dense``, so its ``state_dict`` loads as it is.

    Parameters
    ----------
    linear
        The linear layer (shared, not copied, when taken from a loaded ``SentenceTransformer``).
    activation_function
        A module, a plain function, or ``None`` (identity).
    use_residual
        Add the input (projected by ``residual`` when the sizes differ).
    residual
        ``nn.Linear(in_features, out_features, bias=False)`` for a residual between different sizes.

    """

    def __init__(
        self,
        linear: nn.Linear,
        activation_function: nn.Module | Callable | None = None,
        use_residual: bool = False,
        residual: nn.Linear | None = None,
    ) -> None:
        super().__init__()
        self.linear = linear
        if activation_function is None:
            activation_function = nn.Identity()
        elif not isinstance(activation_function, nn.Module):
            activation_function = Activation(activation_function)
        self.activation_function = activation_function
        self.use_residual = bool(use_residual)
        if self.use_residual and linear.in_features != linear.out_features:
            if residual is None:
                raise ValueError("a residual between different sizes needs the residual= projection")
            self.residual = residual

    @property
    def in_features(self) -> int:
        """Size of the input embedding."""
        return self.linear.in_features

    @property
    def out_features(self) -> int:
        """Size of the output embedding."""
        return self.linear.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.activation_function(self.linear(x))
        if self.use_residual:
            out = out + (x if self.in_features == self.out_features else self.residual(x))
        return out


class L2Normalize(nn.Module):
    """``x / max(|x|, 1e-12)`` over the last dimension, as ``torch.nn.functional.normalize``.

    Computed as ``RMSNorm(x) / sqrt(dim)``: the ``nn.RMSNorm`` child is what the LN rule holds constant.

    Parameters
    ----------
    dim
        Size of the embeddings it normalises.

    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = int(dim)
        # rms = sqrt(|x|^2 / dim + eps): |x|^2 + floor^2 under the root, as a floored norm
        self.rms = nn.RMSNorm(self.dim, eps=NORMALIZE_FLOOR**2 / self.dim, elementwise_affine=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rms(x) * self.dim**-0.5

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class TruncateDim(nn.Module):
    """The first ``dim`` dimensions of the embedding (sentence-transformers' ``truncate_dim``, Matryoshka)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = int(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[..., : self.dim]

    def extra_repr(self) -> str:
        return f"dim={self.dim}"
