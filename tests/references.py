"""Slow, obvious reference computations the fast paths are tested against."""

from __future__ import annotations

import torch

from bilrp import TransformerComposite
from bilrp.composites import PlainComposite


def per_dimension_bilrp(model, emb_a, emb_b, mask_a, mask_b, composite=None) -> torch.Tensor:
    """The paper's algorithm, literally: for every embedding dimension m, one LRP backward pass per text,
    ``R += LRP(phi_m, x) outer LRP(phi_m, x')``; cosine divides by the norms."""
    composite = composite or TransformerComposite()
    relevances = []
    with composite.context(model):
        for emb, mask in ((emb_a, mask_a), (emb_b, mask_b)):
            x = emb.detach().clone().requires_grad_(True)
            rows = []
            for m in range(model.represent(x, mask).shape[-1]):
                phi = model.represent(x, mask)  # a fresh forward per dimension, as the paper's code does
                (grad,) = torch.autograd.grad(phi[:, m].sum(), x)
                rows.append((x * grad).sum(-1).detach())  # (batch, seq)
            relevances.append(torch.stack(rows, dim=-1))  # (batch, seq, dim)
        with torch.no_grad():
            phi_a, phi_b = model.represent(emb_a, mask_a), model.represent(emb_b, mask_b)
    relevance = torch.einsum("bim,bjm->bij", *relevances)
    if model.similarity == "cosine":
        relevance = relevance / (phi_a.norm(dim=-1) * phi_b.norm(dim=-1))[:, None, None]
    return relevance


def hessian_x_product(model, emb_a, emb_b, mask_a, mask_b) -> torch.Tensor:
    """``sum_kl x_ik x'_jl d^2 s / dx_ik dx'_jl`` from the full autograd Hessian (one pair, batch 1)."""
    shape_a, shape_b = emb_a.shape, emb_b.shape
    n_a = emb_a.numel()

    def similarity(flat: torch.Tensor) -> torch.Tensor:
        a = flat[:n_a].reshape(shape_a)
        b = flat[n_a:].reshape(shape_b)
        return model(a, b, mask_a, mask_b).sum()

    flat = torch.cat([emb_a.detach().flatten(), emb_b.detach().flatten()])
    with PlainComposite().context(model):  # eager attention: fused kernels have no double backward
        hessian = torch.autograd.functional.hessian(similarity, flat)
    cross = hessian[:n_a, n_a:].reshape(shape_a[1], shape_a[2], shape_b[1], shape_b[2])
    return torch.einsum("ik,ikjl,jl->ij", emb_a[0].detach(), cross, emb_b[0].detach())[None]
