"""A NaN or infinite weight: every gradient method is refused, naming the module at fault (issue 22, case 6).

BiLRP's certificate refused a NaN weight naming the module; Hessian x Product, Integrated Jacobians and the
embedding baseline returned a NaN score without an error. They now refuse it with one line naming the first
module whose output is not finite, its parameter, and what to do.
"""

import pytest
import torch

import bilrp
import bilrp.attr._core.nonfinite as nonfinite
from bilrp.attr._core.nonfinite import NonFiniteError, first_nonfinite_module
from tiny_models import tiny_similarity_model

CULPRIT = "encoder.encoder.layer.1.intermediate.dense"
METHODS = ["hxp", "ij", "embedding"]


def broken(value: float) -> bilrp.SimilarityModel:
    model = tiny_similarity_model("bert", "mean", "cosine", dtype=torch.float32)
    with torch.no_grad():
        model.get_submodule(CULPRIT).weight[3, 4] = value
    return model


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
@pytest.mark.parametrize("method", METHODS)
def test_a_non_finite_weight_is_refused_naming_the_module_and_its_parameter(method, value):
    model = broken(value)
    with pytest.raises(NonFiniteError) as error:
        bilrp.explain(model, "a cat sat on the mat", "the dog ran", method=method)
    message = str(error.value)
    assert "\n" not in message and "NaN or infinite" in message
    assert f"the first module whose output is not finite is {CULPRIT!r} (Linear, whose parameter 'weight'" in message
    assert message.endswith("check the model's weights and its own output on these texts (torch.isfinite) before "
                            "explaining them")  # fmt: skip


def test_bilrp_still_refuses_it_with_its_certificate():
    with pytest.raises(bilrp.CertificateError, match=CULPRIT):
        bilrp.explain(broken(float("nan")), "a cat sat on the mat", "the dog ran")


@pytest.mark.parametrize("method", ["hxp", "ij"])
def test_the_captum_api_refuses_non_finite_input_embeddings(method):
    model = tiny_similarity_model("bert", "mean", "cosine", dtype=torch.float32)
    a, b = model.tokenize(["a cat sat"]), model.tokenize(["the dog ran"])
    emb_a, emb_b = model.embed(a["input_ids"], a["attention_mask"]), model.embed(b["input_ids"], b["attention_mask"])
    emb_a[0, 1, 0] = float("nan")
    attribution = bilrp.HessianXProduct(model) if method == "hxp" else bilrp.IntegratedJacobians(model, n_steps=2)
    with pytest.raises(NonFiniteError, match="the input embeddings already hold NaN or infinite values"):
        attribution.attribute((emb_a, emb_b), additional_forward_args=(a["attention_mask"], b["attention_mask"]))


@pytest.mark.parametrize("method", METHODS)
def test_a_finite_result_is_not_searched_again(method, monkeypatch):
    monkeypatch.setattr(nonfinite, "first_nonfinite_module", lambda *a: pytest.fail("searched a finite result"))
    model = tiny_similarity_model("bert", "mean", "cosine")
    explanation = bilrp.explain(model, "a cat sat on the mat", "the dog ran", method=method)
    assert torch.isfinite(explanation.relevance).all() and explanation.score == explanation.score


def test_the_search_names_the_innermost_module_first():
    model = broken(float("nan"))
    batch = model.tokenize(["a cat"])
    mask = batch["attention_mask"]
    name, module = first_nonfinite_module(model, lambda: model.represent(model.embed(batch["input_ids"], mask), mask))
    assert name == CULPRIT and isinstance(module, torch.nn.Linear)
    healthy = tiny_similarity_model("bert", "mean", "cosine")
    assert first_nonfinite_module(healthy, lambda: healthy.encode(["a cat"])) is None


def test_the_refusal_is_a_certificate_error_and_a_value_error():
    assert issubclass(NonFiniteError, bilrp.CertificateError) and issubclass(NonFiniteError, ValueError)


def test_the_command_line_gives_one_line_and_status_2(tmp_path, capsys):
    from bilrp.cli import main
    from tiny_models import tiny_encoder, tokenizer

    encoder = tiny_encoder("bert", dtype=torch.float32)
    with torch.no_grad():
        encoder.get_submodule(CULPRIT.removeprefix("encoder.")).weight[3, 4] = float("nan")
    encoder.save_pretrained(tmp_path)
    tokenizer().save_pretrained(tmp_path)
    capsys.readouterr()
    assert main(["explain", "a cat sat", "the dog ran", "--model", str(tmp_path), "--method", "hxp"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Hessian x Product refused" in err and "'weight' is not finite" in err
