"""The state a model is explained in: one explanation at a time, eval mode, float32 arithmetic.

Every bilrp entry point that runs a model (the attributions, ``explain``, ``SimilarityModel``'s own
steps) does so inside :func:`explaining`. It

- holds bilrp's process-wide re-entrant lock, so two threads never explain (or canonize) a model at the
  same time: canonizers change module instances for the duration of an explanation, and a second thread
  running the same modules meanwhile would see the rules (or install them twice);
- switches every module to eval mode (dropout off, embedding dropout included) and restores each
  module's training flag afterwards, and the hub-kernels mode of a kernelized transformers model
  (``kernels_mode``, which ``eval()`` switches to INFERENCE), on every path, errors included;
- runs half-precision (float16 / bfloat16) models in float32: each half-precision parameter and buffer
  is replaced by a float32 copy for the duration (the conversion is exact) and the original tensor is put
  back afterwards, so the model is restored bit for bit. Explanations are then computed, and certified,
  in float32.

Calls nest: an inner :func:`explaining` on a model already being explained in the same thread only takes
the (re-entrant) lock.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

__all__ = ["explaining", "exclusive", "keep_kernel_modes", "HALF_DTYPES"]

HALF_DTYPES = (torch.float16, torch.bfloat16)
_LOCK = threading.RLock()
_ACTIVE: dict[int, int] = {}  # id(module) -> nesting depth, read and written under _LOCK only


@contextmanager
def exclusive() -> Iterator[None]:
    """Hold bilrp's process-wide lock (re-entrant): no other thread runs an explanation meanwhile."""
    with _LOCK:
        yield


@contextmanager
def explaining(module: nn.Module) -> Iterator[nn.Module]:
    """Run ``module`` for an explanation: exclusive, in eval mode and in float32; restore everything after.

    Parameters
    ----------
    module
        The model (a :class:`~bilrp.SimilarityModel` or any ``nn.Module``).

    """
    with _LOCK:
        key = id(module)
        if _ACTIVE.get(key):
            _ACTIVE[key] += 1
            try:
                yield module
            finally:
                _ACTIVE[key] -= 1
            return
        training = {child: child.training for child in module.modules()}
        restore_kernels = keep_kernel_modes(module)
        restore_precision = _upcast_half_tensors(module)
        _ACTIVE[key] = 1
        try:
            module.eval()
            yield module
        finally:
            _ACTIVE.pop(key, None)
            restore_precision()
            for child, flag in training.items():
                child.training = flag
            restore_kernels()


def keep_kernel_modes(module: nn.Module) -> Callable[[], None]:
    """Remember the hub-kernels mode of every kernelized model in ``module``; return what restores it.

    transformers' ``PreTrainedModel.train(mode)``, and so ``eval()``, switches a model that runs hub kernels
    (``use_kernels``) to ``kernels_mode`` INFERENCE or TRAINING and kernelizes it again; putting the training
    flags back leaves that mode behind. The returned function sets each changed mode back (kernelizing again).
    """
    saved = [
        (child, child.kernels_mode)
        for child in module.modules()
        if getattr(child, "use_kernels", False) is True and hasattr(child, "kernels_mode")
    ]

    def restore() -> None:
        for child, mode in saved:
            if child.kernels_mode != mode:
                child.kernels_mode = mode

    return restore


def _upcast_half_tensors(module: nn.Module):
    """Replace half-precision parameters and buffers by float32 copies; return the function that undoes it."""
    swapped_parameters: list[tuple[nn.Parameter, torch.Tensor]] = []
    swapped_buffers: list[tuple[nn.Module, str, torch.Tensor]] = []
    for parameter in module.parameters():
        if parameter.dtype in HALF_DTYPES:
            swapped_parameters.append((parameter, parameter.data))
            parameter.data = parameter.data.float()
    for child in module.modules():
        for name, buffer in child._buffers.items():
            if buffer is not None and buffer.dtype in HALF_DTYPES:
                swapped_buffers.append((child, name, buffer))
                child._buffers[name] = buffer.float()

    def restore() -> None:
        for parameter, original in swapped_parameters:
            parameter.data = original
        for child, name, original in swapped_buffers:
            child._buffers[name] = original

    return restore
