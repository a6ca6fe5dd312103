"""Explaining a model leaves it as it was: the hub-kernels mode of a kernelized transformers model included.

transformers' ``PreTrainedModel.eval()`` switches a model that runs hub kernels to ``kernels_mode`` INFERENCE;
bilrp put the training flags back but left that mode at INFERENCE (issue 22, case 10), on every path.
"""

import pytest
import torch

import bilrp
from bilrp.eval_eager import EvalEagerCanonizer
from tiny_models import tiny_similarity_model

kernels = pytest.importorskip("kernels", reason="transformers' hub kernels need the kernels package")


@pytest.fixture
def kernelized():
    model = tiny_similarity_model("bert", "mean", "cosine", dtype=torch.float32)
    model.encoder.set_use_kernels(True)  # offline: no kernel is fetched, the mode is what is kept
    model.train()
    assert model.encoder.kernels_mode == kernels.Mode.TRAINING
    return model


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda m: bilrp.explain(m, "", "b"), id="refused-empty-text"),
        pytest.param(lambda m: bilrp.explain(m, "a cat", "b"), id="bilrp"),
        pytest.param(lambda m: bilrp.explain(m, "a cat", "b", method="hxp"), id="hxp"),
        pytest.param(lambda m: m.encode(["a cat"]), id="encode"),
    ],
)
def test_the_kernels_mode_and_training_flags_are_restored_on_every_path(kernelized, call):
    flags = {name: module.training for name, module in kernelized.named_modules()}
    try:
        call(kernelized)
    except ValueError as error:
        assert "empty" in str(error)
    assert kernelized.encoder.kernels_mode == kernels.Mode.TRAINING
    assert {name: module.training for name, module in kernelized.named_modules()} == flags


def test_the_eval_eager_canonizer_restores_it_too(kernelized):
    canonizer = EvalEagerCanonizer()
    canonizer.register(kernelized)
    assert kernelized.encoder.kernels_mode == kernels.Mode.INFERENCE and not kernelized.training
    canonizer.remove()
    assert kernelized.encoder.kernels_mode == kernels.Mode.TRAINING and kernelized.training
