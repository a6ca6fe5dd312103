"""Loading of similarity models (``bilrp.models.loading``): every bad input is refused with one line naming
the file or field at fault, and no sentence-transformers pipeline is silently explained as another one.
"""

import collections
import json
import shutil
import subprocess
import sys
import warnings

import pytest
import torch
from torch import nn

from bilrp import DEFAULT_MODEL, SimilarityModel
from bilrp.models import ModelLoadError, as_similarity_model, resolve_model_path
from bilrp.models.lengths import position_limit
from tiny_models import save_tiny_bert, tiny_encoder, tokenizer

TEXT_A, TEXT_B = "A man is playing a guitar.", "Someone plays music on a guitar."


def refused(call, *args, match: str, error=ModelLoadError, **kwargs) -> str:
    """Run ``call``, expect ``error`` with one line matching ``match``; give the message."""
    with pytest.raises(error, match=match) as caught:
        call(*args, **kwargs)
    message = str(caught.value)
    assert "\n" not in message, message
    return message


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    """A saved tiny random BERT (max_position_embeddings 128) with the MiniLM tokenizer."""
    return save_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture
def folder(tiny_folder, tmp_path):
    """A fresh copy of the tiny BERT folder, to damage."""
    return shutil.copytree(tiny_folder, tmp_path / "model")


def make_st_folder(folder, pooling_config=None, st_config=None, sbert_config=None, extra_modules=()):
    """Turn a HuggingFace folder into a sentence-transformers folder (Transformer -> Pooling -> extras)."""
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}]
    modules.append({"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"})
    (folder / "1_Pooling").mkdir()
    pooling_config = {"embedding_dimension": 32, "pooling_mode": "mean"} if pooling_config is None else pooling_config
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(pooling_config))
    for index, kind in enumerate(extra_modules, start=2):
        path = f"{index}_{kind}"
        (folder / path).mkdir()
        modules.append({"idx": index, "name": str(index), "path": path, "type": f"sentence_transformers.models.{kind}"})
    (folder / "modules.json").write_text(json.dumps(modules))
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 48, **(sbert_config or {})}))
    if st_config is not None:
        (folder / "config_sentence_transformers.json").write_text(json.dumps(st_config))
    return folder


# ---------------------------------------------------------------------------------------------- tokenizers
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")


def test_a_folder_without_tokenizer_files_is_refused(folder):
    for name in TOKENIZER_FILES:
        (folder / name).unlink(missing_ok=True)
    message = refused(SimilarityModel.from_pretrained, folder, match="no tokenizer files")
    for name in ("tokenizer.json", "vocab.txt", "vocab.json + merges.txt", "spiece.model", "tokenizer.model"):
        assert name in message
    assert str(folder) in message


def test_vocab_json_without_merges_is_refused(folder):
    for name in TOKENIZER_FILES:
        (folder / name).unlink(missing_ok=True)
    (folder / "vocab.json").write_text(json.dumps({"[UNK]": 0, "a": 1}))
    refused(SimilarityModel.from_pretrained, folder, match="vocab.json but no merges.txt")


def test_a_tokenizer_of_a_few_tokens_is_refused(folder):
    for name in TOKENIZER_FILES:
        (folder / name).unlink(missing_ok=True)
    (folder / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b"]) + "\n")
    refused(SimilarityModel.from_pretrained, folder, match=r"has only 7 tokens.*missing or broken")


def test_a_tokenizer_larger_than_the_embeddings_is_refused(tmp_path):
    from transformers import BertConfig, BertModel

    config = BertConfig(
        vocab_size=200, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64
    )
    BertModel(config, add_pooling_layer=False).save_pretrained(tmp_path)
    tokenizer().save_pretrained(tmp_path)
    refused(SimilarityModel.from_pretrained, tmp_path, match=r"30522 tokens but the model embeds only 200")


def test_do_lower_case_lowercases_a_cased_tokenizer(folder):
    data = json.loads((folder / "tokenizer.json").read_text())
    data["normalizer"]["lowercase"] = False
    (folder / "tokenizer.json").write_text(json.dumps(data))
    config = json.loads((folder / "tokenizer_config.json").read_text())
    (folder / "tokenizer_config.json").write_text(json.dumps({**config, "do_lower_case": False}))
    cased = SimilarityModel.from_pretrained(folder)
    assert cased.tokenizer.tokenize("Guitar") != cased.tokenizer.tokenize("guitar")  # the test is not vacuous
    lowered = SimilarityModel.from_pretrained(make_st_folder(folder, sbert_config={"do_lower_case": True}))
    assert lowered.tokenizer.tokenize("Guitar") == lowered.tokenizer.tokenize("guitar")


# ---------------------------------------------------------------------------------------------- weights
class NotATensor:
    """An object torch's weights_only unpickler refuses."""


def test_a_pickle_refused_by_weights_only_loading_is_named(folder):
    from safetensors.torch import load_file

    state = collections.OrderedDict(load_file(folder / "model.safetensors"))
    state["extra"] = NotATensor()
    torch.save(state, folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    message = refused(SimilarityModel.from_pretrained, folder, match="weights_only")
    assert str(folder / "pytorch_model.bin") in message and "model.safetensors" in message


@pytest.mark.parametrize("keep", [0.5, 10 / 1e9])
def test_a_truncated_safetensors_file_is_named(folder, keep):
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: max(int(len(data) * keep), 5)])
    message = refused(SimilarityModel.from_pretrained, folder, match="truncated or corrupt")
    assert str(folder / "model.safetensors") in message


def test_a_truncated_pickle_is_named(folder):
    from safetensors.torch import load_file

    torch.save(load_file(folder / "model.safetensors"), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    data = (folder / "pytorch_model.bin").read_bytes()
    (folder / "pytorch_model.bin").write_bytes(data[: len(data) // 2])
    message = refused(SimilarityModel.from_pretrained, folder, match="cannot load model")
    assert str(folder / "pytorch_model.bin") in message


def test_a_folder_without_weights_or_config_is_refused(folder):
    (folder / "model.safetensors").unlink()
    refused(SimilarityModel.from_pretrained, folder, match=r"has no weights: expected model.safetensors")
    (folder / "config.json").unlink()
    refused(SimilarityModel.from_pretrained, folder, match=r"has no config.json")


# ---------------------------------------------------------------------------------------------- JSON files
@pytest.mark.parametrize(
    "name",
    [
        "config.json",
        "tokenizer_config.json",
        "tokenizer.json",
        "modules.json",
        "sentence_bert_config.json",
        "1_Pooling/config.json",
        "config_sentence_transformers.json",
    ],
)
def test_bad_json_names_the_file(folder, name):
    make_st_folder(folder, st_config={"similarity_fn_name": "cosine"})
    (folder / name).write_text('{"max_seq_length": 12,,')
    message = refused(SimilarityModel.from_pretrained, folder, match="is not valid JSON")
    assert str(folder / name) in message


@pytest.mark.parametrize(
    ("modules", "match"),
    [
        ({"0": "Transformer"}, "must hold a JSON list, not a dict"),
        (["Transformer"], r"entry 0 is a str, not an object"),
        ([{"type": "sentence_transformers.models.Transformer"}], r"entry 0 \(sentence_transformers.*\) has no 'path'"),
        ([{"path": ""}], r"entry 0 has no 'type'"),
        ([{"path": "nowhere", "type": "sentence_transformers.models.Transformer"}], r"'nowhere' is not a folder"),
        ([], "has no modules"),
    ],
)
def test_a_broken_modules_json_is_named(folder, modules, match):
    make_st_folder(folder)
    (folder / "modules.json").write_text(json.dumps(modules))
    assert "modules.json" in refused(SimilarityModel.from_pretrained, folder, match=match)


# ---------------------------------------------------------------------------------------------- lengths
@pytest.mark.parametrize("value", [0, -5, "abc", 12.5, True])
def test_a_bad_max_seq_length_is_named(folder, value):
    make_st_folder(folder, sbert_config={"max_seq_length": value})
    message = refused(SimilarityModel.from_pretrained, folder, match=r"max_seq_length must be a positive integer")
    assert "sentence_bert_config.json" in message and repr(value) in message
    assert SimilarityModel.from_pretrained(folder, max_length=20).max_length == 20  # the way out it names


def test_a_max_seq_length_beyond_the_position_embeddings_is_capped(folder):
    make_st_folder(folder, sbert_config={"max_seq_length": 100000})
    with pytest.warns(UserWarning, match=r"max_seq_length 100000 exceeds the 128 tokens.*capped to 128"):
        model = SimilarityModel.from_pretrained(folder)
    assert model.max_length == 128
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scores = model.score(["word " * 300], ["word " * 200])  # longer than the positions: no index error
    assert torch.isfinite(scores).all()


@pytest.mark.parametrize("value", [0, -1, "12", True, 1.5])
def test_a_bad_max_length_argument_is_refused(tiny_folder, value):
    refused(
        SimilarityModel.from_pretrained,
        tiny_folder,
        max_length=value,
        error=ValueError,
        match="max_length must be a positive integer",
    )


def test_a_max_length_argument_beyond_the_positions_is_capped(tiny_folder, tmp_path):
    with pytest.warns(UserWarning, match=r"max_length= 1000 exceeds the 128 tokens"):
        assert SimilarityModel.from_pretrained(tiny_folder, max_length=1000).max_length == 128
    assert SimilarityModel.from_pretrained(tiny_folder, max_length=100).max_length == 100
    tiny_encoder("roberta", dtype=torch.float32).save_pretrained(tmp_path)  # positions offset by 2
    tokenizer().save_pretrained(tmp_path)
    assert SimilarityModel.from_pretrained(tmp_path).max_length == 126
    with pytest.warns(UserWarning, match=r"capped to 126"):
        model = SimilarityModel.from_pretrained(tmp_path, max_length=128)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert torch.isfinite(model.score(["word " * 300], ["word"])).all()


def test_a_model_built_with_a_max_length_beyond_the_positions_is_capped():
    with pytest.warns(UserWarning, match=r"max_length= 1000 exceeds the 128 tokens.*capped to 128") as caught:
        model = SimilarityModel(tiny_encoder("bert"), tokenizer(), max_length=1000)
    assert model.max_length == 128 and caught[0].filename == __file__  # the warning points at the caller
    with pytest.warns(UserWarning, match=r"capped to 126"):
        assert SimilarityModel(tiny_encoder("roberta"), tokenizer(), max_length=128).max_length == 126
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert SimilarityModel(tiny_encoder("bert"), tokenizer(), max_length=128).max_length == 128
        assert SimilarityModel(tiny_encoder("bert"), tokenizer()).max_length == 128


def test_a_loaded_max_length_is_capped_once(tiny_folder):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert SimilarityModel.from_pretrained(tiny_folder, max_length=1000).max_length == 128
    assert [str(warning.message).split(" exceeds")[0] for warning in caught] == ["max_length= 1000"]


@pytest.mark.parametrize("value", [0, -1, "12", True, 1.5])
def test_a_bad_max_length_is_refused_by_the_model(value):
    refused(
        SimilarityModel,
        tiny_encoder("bert"),
        tokenizer(),
        max_length=value,
        error=ValueError,
        match="max_length must be",
    )


@pytest.mark.parametrize(("architecture", "limit"), [("bert", 128), ("roberta", 126), ("mpnet", 126), ("gpt-neo", 128)])
def test_position_limits(architecture, limit):
    assert position_limit(tiny_encoder(architecture)) == limit


# ---------------------------------------------------------------------------------------------- st folders
@pytest.mark.parametrize("kind", ["LayerNorm", "Transformer", "WeightedLayerPooling"])
def test_a_module_bilrp_does_not_implement_is_refused(folder, kind):
    make_st_folder(folder, extra_modules=["Normalize", kind])
    message = refused(SimilarityModel.from_pretrained, folder, match="bilrp cannot explain this module yet")
    assert f"module 3 ({kind}, path '3_{kind}')" in message and "modules.json" in message
    make_st_folder(shutil.rmtree(folder / "1_Pooling") or folder, extra_modules=[kind])
    assert f"module 2 ({kind}, path '2_{kind}')" in refused(SimilarityModel.from_pretrained, folder, match="yet")


def test_a_pipeline_without_pooling_is_refused_unless_pooling_is_given(folder):
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}]
    (folder / "modules.json").write_text(json.dumps(modules))
    refused(SimilarityModel.from_pretrained, folder, match=r"no Pooling module.*pass pooling=")
    assert SimilarityModel.from_pretrained(folder, pooling="cls").pooling_name == "cls"


def test_a_module_of_another_package_is_refused(folder):
    make_st_folder(folder, extra_modules=["Normalize"])
    modules = json.loads((folder / "modules.json").read_text())
    modules[2]["type"] = "pylate.models.Dense"  # a Dense on token embeddings, not sentence-transformers' own
    (folder / "modules.json").write_text(json.dumps(modules))
    assert "module 2 (Dense, path '2_Normalize')" in refused(SimilarityModel.from_pretrained, folder, match="yet")


@pytest.mark.parametrize(
    ("st_config", "match"),
    [
        ({"truncate_dim": 0}, "truncate_dim 0 must be a positive integer"),
        ({"truncate_dim": "16"}, "truncate_dim '16' must be a positive integer"),
        ({"prompts": {"query": "query: "}, "default_prompt_name": "passage"}, r"'passage' is not one of the prompts"),
        ({"prompts": {"query": 3}}, r"prompt 'query': 3 must be a text"),
        ({"model_type": "SparseEncoder"}, "model_type 'SparseEncoder'"),
    ],
)
def test_bad_st_settings_are_refused(folder, st_config, match):
    make_st_folder(folder, st_config=st_config)
    assert "config_sentence_transformers.json" in refused(SimilarityModel.from_pretrained, folder, match=match)


def test_st_settings_are_read(folder):
    prompts = {"query": "query: ", "document": None}
    make_st_folder(folder, st_config={"prompts": prompts, "default_prompt_name": "query", "truncate_dim": 16})
    model = SimilarityModel.from_pretrained(folder)
    assert (model.prompts, model.default_prompt_name) == ({"query": "query: ", "document": ""}, "query")
    assert [(type(m).__name__, m.dim) for m in model.head] == [("TruncateDim", 16)]
    assert model.tokenize(["a guitar"])["tokens"][0] == ["[CLS]", "query", ":", "a", "guitar", "[SEP]"]
    assert model.encode(["a guitar"]).shape == (1, 16)


def test_an_empty_default_prompt_is_accepted(folder):
    make_st_folder(folder, st_config={"prompts": {"query": "", "document": ""}, "default_prompt_name": "query"})
    model = SimilarityModel.from_pretrained(folder)
    assert model.max_length == 48 and model.tokenize(["a guitar"])["prompt_lengths"] == [0]


@pytest.mark.parametrize(
    ("dense_config", "match"),
    [
        ({"activation_function": "my_package.Swish"}, r"activation_function 'my_package.Swish' is not a torch module"),
        ({"activation_function": "torch.nn.NoSuchThing"}, "does not exist in this torch"),
        ({"in_features": 16}, "in_features 16 but the embedding before it has 32 dimensions"),
        ({"module_input_name": "token_embeddings"}, "module_input_name 'token_embeddings'"),
    ],
)
def test_a_bad_dense_module_is_named(folder, dense_config, match):
    from safetensors.torch import save_file

    make_st_folder(folder, extra_modules=["Dense"])
    config = {"in_features": 32, "out_features": 8, "bias": True, **dense_config}
    (folder / "2_Dense" / "config.json").write_text(json.dumps(config))
    linear = nn.Linear(config["in_features"], 8)
    save_file(
        {"linear.weight": linear.weight.detach(), "linear.bias": linear.bias.detach()},
        folder / "2_Dense" / "model.safetensors",
    )
    assert "module 2 (Dense)" in refused(SimilarityModel.from_pretrained, folder, match=match)


@pytest.mark.parametrize(
    ("sbert_config", "pooling_config", "match"),
    [
        ({"transformer_task": "text-generation"}, None, "transformer_task 'text-generation'"),
        ({"module_output_name": "logits"}, None, "module_output_name 'logits'"),
        ({"modality_config": {"image": {"method": "forward"}}}, None, "modality_config"),
        ({}, {"pooling_mode": "mean", "include_prompt": False}, "include_prompt False"),
    ],
)
def test_module_settings_bilrp_does_not_implement_are_refused(folder, sbert_config, pooling_config, match):
    make_st_folder(folder, pooling_config=pooling_config, sbert_config=sbert_config)
    refused(SimilarityModel.from_pretrained, folder, match=match + ".*bilrp cannot explain this module yet")


# ---------------------------------------------------------------------------------------------- st objects
@pytest.fixture
def st_model():
    from sentence_transformers import SentenceTransformer

    def build(**kwargs):
        return SentenceTransformer(resolve_model_path(DEFAULT_MODEL), device="cpu", **kwargs)

    return build


@pytest.mark.slow
def test_a_plain_sentence_transformer_is_explained_as_it_scores(st_model):
    st = st_model()
    model = SimilarityModel.from_sentence_transformer(st)
    expected = st.similarity(st.encode([TEXT_A]), st.encode([TEXT_B]))
    assert abs(model.score([TEXT_A], [TEXT_B]).item() - expected.item()) < 1e-5
    assert SimilarityModel.from_pretrained(st).encoder is st[0].auto_model  # no "File name too long"


@pytest.mark.slow
def test_as_similarity_model(st_model, tiny_folder):
    st = st_model()
    wrapper = as_similarity_model(st)
    assert as_similarity_model(st) is wrapper and as_similarity_model(wrapper) is wrapper
    assert wrapper.encoder is st[0].auto_model
    assert as_similarity_model(tiny_folder).max_length == 128
    from sentence_transformers.sentence_transformer.modules import Dense

    st.append(Dense(384, 8))  # the cached wrapper is not reused for a changed pipeline
    rebuilt = as_similarity_model(st)
    assert rebuilt is not wrapper and [type(m).__name__ for m in rebuilt.head] == ["L2Normalize", "DenseLayer"]
    refused(as_similarity_model, 3, error=TypeError, match="object of type int")
    refused(as_similarity_model, nn.Linear(2, 2), error=TypeError, match="torch.nn.modules.linear.Linear")


@pytest.mark.slow
def test_a_sentence_transformer_with_a_module_bilrp_does_not_implement_is_refused(st_model):
    from sentence_transformers.sentence_transformer.modules import LayerNorm

    st = st_model()
    st.append(LayerNorm(384))
    for load in (SimilarityModel.from_sentence_transformer, SimilarityModel.from_pretrained):
        message = refused(load, st, match="bilrp cannot explain this module yet")
        assert "module 3 (LayerNorm, sentence_transformers." in message and "name '3'" in message


@pytest.mark.slow
def test_sentence_transformer_settings_are_honoured(st_model):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        st = st_model(truncate_dim=64, prompts={"query": "query: "}, default_prompt_name="query")
    model = SimilarityModel.from_sentence_transformer(st)
    assert [type(m).__name__ for m in model.head] == ["L2Normalize", "TruncateDim"]
    assert (model.prompts["query"], model.default_prompt_name) == ("query: ", "query")
    expected = st.similarity(st.encode([TEXT_A]), st.encode([TEXT_B])).item()
    assert abs(model.score([TEXT_A], [TEXT_B]).item() - expected) < 1e-5
    st.truncate_dim = 32  # a changed setting: as_similarity_model rebuilds its cached wrapper
    assert as_similarity_model(st).head[1].dim == 32


@pytest.mark.slow
def test_a_sentence_transformer_pooling_without_prompt_is_refused(st_model):
    st = st_model()
    st[1].include_prompt = False
    refused(SimilarityModel.from_sentence_transformer, st, match=r"module 1 \(Pooling\): include_prompt False")


@pytest.mark.slow
def test_a_saved_sentence_transformer_with_a_module_bilrp_does_not_implement_is_refused(st_model, tmp_path):
    from sentence_transformers.sentence_transformer.modules import LayerNorm

    st = st_model()
    st.append(LayerNorm(384))
    st.save(str(tmp_path))
    message = refused(SimilarityModel.from_pretrained, tmp_path, match="bilrp cannot explain this module yet")
    assert "module 3 (LayerNorm, path '3_LayerNorm')" in message


def test_other_sentence_transformers_models_and_wrong_types_are_refused():
    fake = type("CrossEncoder", (nn.Module,), {"__module__": "sentence_transformers.cross_encoder.model"})()
    if "sentence_transformers" not in sys.modules:
        pytest.importorskip("sentence_transformers")
    refused(SimilarityModel.from_pretrained, fake, error=TypeError, match="not a CrossEncoder")
    refused(SimilarityModel.from_sentence_transformer, "folder", error=TypeError, match="use SimilarityModel.from_pre")
    refused(SimilarityModel.from_pretrained, 3.5, error=TypeError, match="object of type float")


def test_loading_does_not_import_sentence_transformers():
    code = (
        "import sys, bilrp.models as m; from bilrp.models.st_objects import is_sentence_transformer as f; "
        "f(object()); assert 'sentence_transformers' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_similarities_named_in_errors_are_the_model_s():
    from bilrp._catalog import SIMILARITY_NAMES as _SIMILARITIES
    from bilrp.models import SIMILARITIES

    assert _SIMILARITIES == SIMILARITIES


def test_an_unsupported_similarity_is_refused_naming_the_model_s(folder):
    from bilrp.models import SIMILARITIES

    make_st_folder(folder, st_config={"similarity_fn_name": "euclidean"})
    message = refused(SimilarityModel.from_pretrained, folder, match="unsupported sentence-transformers similarity")
    assert f"bilrp explains {' or '.join(SIMILARITIES)}" in message
    assert SimilarityModel.from_pretrained(folder, similarity="dot").similarity == "dot"
