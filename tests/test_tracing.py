"""The fast engine equals the reference loop (ROME's algorithm) within 1e-5, on every family."""

import dataclasses

import numpy as np
import pytest
import torch
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    GPTNeoXConfig,
    GPTNeoXForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen3Config,
    Qwen3ForCausalLM,
)

from known_speech.tracing import (
    ARCHITECTURES,
    CausalTracer,
    TraceOptions,
    TraceResult,
    TracingSelfCheckError,
    UnsupportedArchitecture,
    window_layers,
)
from known_speech.tracing.noise import subject_noise
from known_speech.tracing.plot import plot_trace
from known_speech.tracing.prompts import answer_token_id, subject_token_range, trace_text_prompt
from known_speech.tracing.reference import reference_trace

SMALL = dict(vocab_size=101, hidden_size=48, intermediate_size=96, num_hidden_layers=5, num_attention_heads=4)


def _tiny(family):
    torch.manual_seed(0)
    configs = {
        "llama": lambda: LlamaForCausalLM(LlamaConfig(**SMALL, num_key_value_heads=2)),
        "mistral": lambda: MistralForCausalLM(MistralConfig(**SMALL, num_key_value_heads=2)),
        "qwen2": lambda: Qwen2ForCausalLM(Qwen2Config(**SMALL, num_key_value_heads=2)),
        "qwen3": lambda: Qwen3ForCausalLM(Qwen3Config(**SMALL, num_key_value_heads=2, head_dim=12)),
        "gpt2": lambda: GPT2LMHeadModel(GPT2Config(vocab_size=101, n_embd=48, n_layer=5, n_head=4, n_positions=32,
                                                   bos_token_id=0, eos_token_id=0)),
        "gpt_neox": lambda: GPTNeoXForCausalLM(GPTNeoXConfig(**SMALL)),
    }
    model = configs[family]().eval()
    with torch.no_grad():  # spread the weights so that restorations move the answer's probability
        for parameter in model.parameters():
            parameter.mul_(4.0)
    return model


def _top_answer(model, input_ids):
    with torch.no_grad():
        return int(model(input_ids=input_ids[None]).logits[0, -1].argmax())


def _assert_equal_to_reference(model, input_ids, subject_range, answer_id, options):
    answer_id = _top_answer(model, input_ids) if answer_id is None else answer_id
    result = CausalTracer(model).trace(input_ids=input_ids, subject_range=subject_range, answer_id=answer_id,
                                       options=options)
    embeds = model.get_input_embeddings()(input_ids)
    reference = reference_trace(model, embeds, subject_range, answer_id, options, result.noise_std)
    assert result.high_score == pytest.approx(reference["high"], abs=1e-5)
    assert result.low_score == pytest.approx(reference["low"], abs=1e-5)
    for kind in options.kinds:
        fast = torch.from_numpy(result.scores[kind])
        assert torch.equal(fast.isnan(), reference[kind].isnan())
        np.testing.assert_allclose(result.scores[kind], reference[kind].numpy(), atol=1e-5, equal_nan=True)
        # the restorations did something: some restore a good part of what the noise took away
        gap = result.high_score - result.low_score
        assert np.nanmax(np.abs(result.scores[kind] - result.low_score)) > 0.1 * abs(gap) > 0, kind
    return result


@pytest.mark.parametrize("family", ["llama", "mistral", "qwen2", "qwen3", "gpt2", "gpt_neox"])
def test_fast_engine_equals_reference_on_tiny_models(family):
    model = _tiny(family)
    input_ids = torch.randint(0, 101, (9,), generator=torch.Generator().manual_seed(1))
    # small chunks so that a position's restorations span several forwards
    options = TraceOptions(samples=4, window=3, max_batch_tokens=60)
    _assert_equal_to_reference(model, input_ids, (2, 5), None, options)


def test_token_range_embeddings_input_and_torch_noise():
    model = _tiny("llama")
    input_ids = torch.randint(0, 101, (8,), generator=torch.Generator().manual_seed(2))
    options = TraceOptions(samples=3, window=4, noise_mode="torch", seed=5, token_range=(1, 4, 7), kinds=("mlp", "hidden"))
    result = _assert_equal_to_reference(model, input_ids, (1, 4), None, options)
    assert np.isnan(result.scores["mlp"][0]).all() and not np.isnan(result.scores["mlp"][4]).any()
    # the same prompt given as input embeddings (as continuous speech features are) traces the same
    embeds = model.get_input_embeddings()(input_ids)
    from_embeds = CausalTracer(model).trace(inputs_embeds=embeds, subject_range=(1, 4), answer_id=result.answer_id,
                                            options=options)
    np.testing.assert_allclose(from_embeds.scores["mlp"], result.scores["mlp"], atol=1e-6, equal_nan=True)


def test_rome_noise_is_numpy_randomstate_1():
    options = TraceOptions(samples=10)
    noise = subject_noise(options, 3, 16, 0.5)
    expected = 0.5 * np.random.RandomState(1).randn(10, 3, 16)
    assert noise.dtype == torch.float64
    np.testing.assert_array_equal(noise.numpy(), expected)


def test_window_matches_rome():
    assert list(window_layers(0, 10, 30)) == list(range(0, 5))
    assert list(window_layers(12, 10, 30)) == list(range(7, 17))
    assert list(window_layers(29, 10, 30)) == list(range(24, 30))
    assert list(window_layers(3, 3, 30)) == [2, 3, 4]


def test_unsupported_architecture_lists_supported():
    model = _tiny("llama")
    model.config.model_type = "mamba"
    with pytest.raises(UnsupportedArchitecture, match=r"model_type='mamba'.*supported: \[.*'gpt2'.*'llama'"):
        CausalTracer(model)


def test_self_check_catches_a_wrong_spec():
    model = _tiny("llama")
    wrong = dataclasses.replace(ARCHITECTURES["llama"], final_norm="model.layers.0.input_layernorm")
    with torch.no_grad():
        model.model.norm.weight.normal_(1.0, 0.5)
    with pytest.raises(TracingSelfCheckError, match="does not reproduce the model's forward"):
        CausalTracer(model, wrong).trace(input_ids=torch.arange(8), subject_range=(1, 3), answer_id=3,
                                         options=TraceOptions(samples=2))


def test_bad_arguments_are_named():
    tracer = CausalTracer(_tiny("gpt2"))
    with pytest.raises(ValueError, match="subject_range=\\(4, 2\\)"):
        tracer.trace(input_ids=torch.arange(6), subject_range=(4, 2), answer_id=1)
    with pytest.raises(ValueError, match="answer_id=500"):
        tracer.trace(input_ids=torch.arange(6), subject_range=(1, 2), answer_id=500)
    with pytest.raises(ValueError, match="kinds="):
        TraceOptions(kinds=("resid",))


def test_result_saves_loads_and_plots(tmp_path):
    model = _tiny("gpt2")
    result = CausalTracer(model).trace(input_ids=torch.arange(6), subject_range=(1, 3), answer_id=5,
                                       options=TraceOptions(samples=2, window=2), tokens=list("abcdef"))
    loaded = TraceResult.load(result.save(tmp_path / "r.npz"))
    assert loaded.options == result.options and loaded.tokens == result.tokens
    assert loaded.noise_std == result.noise_std and loaded.subject_range == (1, 3)
    for kind in result.scores:
        np.testing.assert_array_equal(loaded.scores[kind], result.scores[kind])
    png = plot_trace(loaded, tmp_path / "r.png")
    pdf = plot_trace(loaded, tmp_path / "r.pdf")
    assert png.read_bytes()[:4] == b"\x89PNG" and pdf.read_bytes()[:4] == b"%PDF"


@pytest.mark.slow
def test_real_smollm2_equals_reference_and_knows_rome(smollm2):
    model, tokenizer = smollm2
    prompt, subject = "The capital of Italy is", "Italy"
    input_ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"][0]
    subject_range = subject_token_range(tokenizer, prompt, subject)
    assert tokenizer.decode(input_ids[subject_range[0]:subject_range[1]]).strip() == "Italy"
    answer_id = answer_token_id(tokenizer, "Rome")
    assert tokenizer.decode([answer_id]) == " Rome"
    options = TraceOptions(samples=3)
    result = _assert_equal_to_reference(model, input_ids, subject_range, answer_id, options)
    assert result.high_score > 0.3 and result.low_score < result.high_score


@pytest.mark.slow
def test_trace_text_prompt_defaults_to_top_prediction(smollm2):
    model, tokenizer = smollm2
    result = trace_text_prompt(CausalTracer(model, model_name="smollm2"), tokenizer, "The capital of Italy is", "Italy",
                               options=TraceOptions(samples=2, kinds=("hidden",)))
    assert result.answer == " Rome"
    assert result.tokens[result.subject_range[0]].strip() == "Italy"
