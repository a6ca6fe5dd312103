"""``EvalEagerCanonizer``: eval mode and the eager attention path for the duration of an explanation."""

from __future__ import annotations

from torch import nn
from zennit.canonizers import Canonizer

from .explaining import keep_kernel_modes

__all__ = ["EvalEagerCanonizer"]

_MISSING = object()
_IMPLEMENTATION = "_attn_implementation_internal"


class EvalEagerCanonizer(Canonizer):
    """Switch a model to eval mode and to the eager attention path; restore both on remove.

    Every HuggingFace config found on a sub-module gets ``_attn_implementation = "eager"`` so that
    attention goes through a softmax the AH rule can see, with the model's own padding mask.
    """

    def __init__(self) -> None:
        self.training: dict[nn.Module, bool] = {}
        self.implementations: list[tuple[object, object]] = []
        self.restore_kernels = _nothing

    def apply(self, root_module: nn.Module) -> list[Canonizer]:
        """Register a copy on the root module."""
        instance = self.copy()
        instance.register(root_module)
        return [instance]

    def register(self, root_module: nn.Module) -> None:
        """Put every module in eval mode and every config on the eager attention path."""
        self.training = {module: module.training for module in root_module.modules()}
        self.restore_kernels = keep_kernel_modes(root_module)
        for module in root_module.modules():
            config = getattr(module, "config", None)
            if config is None or not hasattr(config, "_attn_implementation"):
                continue
            if all(config is not seen for seen, _ in self.implementations):
                self.implementations.append((config, config.__dict__.get(_IMPLEMENTATION, _MISSING)))
                config.__dict__[_IMPLEMENTATION] = "eager"
        root_module.eval()

    def remove(self) -> None:
        """Restore training flags, attention implementations and hub-kernels modes."""
        for module, training in self.training.items():
            module.training = training
        for config, value in self.implementations:
            if value is _MISSING:
                config.__dict__.pop(_IMPLEMENTATION, None)
            else:
                config.__dict__[_IMPLEMENTATION] = value
        self.restore_kernels()
        self.training, self.implementations, self.restore_kernels = {}, [], _nothing

    def copy(self) -> EvalEagerCanonizer:
        return self.__class__()

    def merge(self, other: EvalEagerCanonizer) -> EvalEagerCanonizer:
        return self.copy()


def _nothing() -> None:
    """Nothing to restore."""
