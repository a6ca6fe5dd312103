"""Refuse a NaN or infinite result of a gradient method, naming the first module whose output is not finite.

BiLRP's conservation certificate never certifies a NaN or an infinity (:func:`bilrp.certificate.certificate_error`)
and names the first module that produced one. The plain-gradient methods (Hessian x Product, Integrated
Jacobians) and the embedding baseline have no certificate, so they check their result here: a per-text factor
or representation that holds a NaN or an infinity is refused with :class:`NonFiniteError`, one line naming the
first module, in the order the modules finish, whose output is not finite (found by running the
representation once more with a forward hook on every module), the parameter of that module that is not
finite if one is, and what to do. Nothing is run again when the result is finite: the check is one
``isfinite`` over tensors already computed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from ...certificate import CertificateError

__all__ = ["NonFiniteError", "refuse_nonfinite", "first_nonfinite_module"]


class NonFiniteError(CertificateError, ValueError):
    """A method's relevance or score would be NaN or infinite; the message names the module at fault.

    A :class:`~bilrp.CertificateError` (relevance refused, as BiLRP's certificate refuses a NaN) and a
    ``ValueError`` (the model or input at fault: one line and exit status 2 on the command line, 422 in the
    explorer).
    """


def refuse_nonfinite(
    method: str,
    model: nn.Module,
    represent: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    inputs: Sequence[torch.Tensor | None],
    mask: torch.Tensor,
    results: Sequence[torch.Tensor],
) -> None:
    """Raise :class:`NonFiniteError` when any of ``results`` holds a NaN or an infinity; else do nothing.

    Parameters
    ----------
    method
        The method's name, for the message (``"Hessian x Product"``).
    model
        The module whose sub-modules are searched (the :class:`~bilrp.SimilarityModel`).
    represent
        ``represent(embeddings, mask) -> phi``, run again (without gradients) to find the culprit.
    inputs
        The embedding outputs the method started from, then any other point it evaluated (the reference of
        Integrated Jacobians); ``None`` entries are skipped.
    mask
        The 0/1 attention mask of ``inputs``.
    results
        What the method computed (contributions, representation).

    """
    if all(bool(torch.isfinite(result).all()) for result in results):
        return
    raise NonFiniteError(_message(method, model, represent, [x for x in inputs if x is not None], mask))


def _message(method: str, model: nn.Module, represent, inputs: list[torch.Tensor], mask: torch.Tensor) -> str:
    head = f"{method} refused: its relevance would be NaN or infinite"
    advice = "check the model's weights and its own output on these texts (torch.isfinite) before explaining them"
    for position, embeddings in enumerate(inputs):
        where = "the input embeddings" if position == 0 else "the reference input"
        if not bool(torch.isfinite(embeddings).all()):
            return f"{head}: {where} already hold NaN or infinite values; {advice}"
        culprit = first_nonfinite_module(model, lambda e=embeddings: represent(e, mask))
        if culprit is not None:
            name, module = culprit
            parameter = _nonfinite_parameter(module)
            held = f", whose parameter {parameter!r} is not finite" if parameter else ""
            at = "" if position == 0 else " at the reference input"
            return (
                f"{head}: the first module whose output is not finite{at} is {name or '<root>'!r} "
                f"({type(module).__qualname__}{held}); {advice}"
            )
    return (
        f"{head}: every module's output is finite, so the gradients are not (an overflow in the backward pass, or "
        f"a point of the integration path); {advice}"
    )


def first_nonfinite_module(root: nn.Module, run: Callable[[], Any]) -> tuple[str, nn.Module] | None:
    """``(name, module)`` of the first module of ``root`` to finish with a NaN or infinite output during ``run()``.

    Modules finish innermost first, so this is the module whose own computation made the value; ``None`` when
    every output is finite (or ``run`` fails: the caller's message then says no module was found).
    """
    found: list[tuple[str, nn.Module]] = []

    def hook(name: str):
        def check(module: nn.Module, args: Any, output: Any) -> None:
            if not found and any(not bool(torch.isfinite(t).all()) for t in _float_tensors(output)):
                found.append((name, module))

        return check

    with _hooked(root, hook), torch.no_grad():
        try:
            run()
        except Exception:  # the search is best effort: the refusal stands without a culprit
            return None
    return found[0] if found else None


@contextmanager
def _hooked(root: nn.Module, hook: Callable[[str], Callable[..., None]]) -> Iterator[None]:
    handles = [module.register_forward_hook(hook(name)) for name, module in root.named_modules()]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _float_tensors(output: Any, depth: int = 0) -> list[torch.Tensor]:
    """The floating-point tensors of a module's output (a tensor, a tuple, a dict or a ``ModelOutput``)."""
    if isinstance(output, torch.Tensor):
        return [output] if output.is_floating_point() else []
    if depth > 2:
        return []
    if isinstance(output, dict):  # ModelOutput is a dict
        output = list(output.values())
    if isinstance(output, (tuple, list)):
        return [t for item in output for t in _float_tensors(item, depth + 1)]
    return []


def _nonfinite_parameter(module: nn.Module) -> str | None:
    """The name of the first parameter or buffer of ``module`` itself that holds a NaN or an infinity."""
    for name, tensor in [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]:
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            return name
    return None
