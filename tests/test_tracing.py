"""The fast engine equals the reference loop (ROME's algorithm) within 1e-5, on every family."""

import dataclasses
import types

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
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
from known_speech.tracing.attention import SharedPrefix, math_attention_with_lse, shared_prefix_attention
from known_speech.tracing.noise import subject_noise
from known_speech.tracing.plot import plot_trace
from known_speech.tracing.prompts import answer_token, encode, subject_token_range, trace_text_prompt
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


def _assert_equal_to_reference(model, input_ids, subject_range, answer_id, options, tracer=None, shared_prefix=True,
                               answer_ids=None):
    """shared_prefix: which attention path the engine must have taken (a silent fallback fails)."""
    answer_id = _top_answer(model, input_ids) if answer_id is None and answer_ids is None else answer_id
    tracer = tracer or CausalTracer(model)
    result = tracer.trace(input_ids=input_ids, subject_range=subject_range, answer_id=answer_id, answer_ids=answer_ids,
                          options=options)
    assert tracer.shared_prefix is shared_prefix
    embeds = model.get_input_embeddings()(input_ids)
    reference = reference_trace(model, embeds, subject_range, answer_id, options, result.noise_std,
                                answer_ids=answer_ids)
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


def test_shared_prefix_attention_equals_sdpa_over_prefix_and_rows():
    """Rows of 3 samples x 4 restorations, GQA 8/2 heads: the split attention is softmax attention of each row
    over [its sample's prefix, its own positions] (the fused CPU kernel and the float32 math alike)."""
    generator = torch.Generator().manual_seed(0)
    samples, rows, heads, kv_heads, prefix, length, dim = 3, 4, 8, 2, 5, 6, 16
    batch = samples * rows
    # queries in (B, q, heads, D) memory order, as the attention modules leave them
    query = torch.randn(batch, length, heads, dim, generator=generator).transpose(1, 2)
    key, value = (torch.randn(batch, kv_heads, length, dim, generator=generator) for _ in range(2))
    prefix_keys, prefix_values = (torch.randn(samples, kv_heads, prefix, dim, generator=generator) for _ in range(2))
    shared = SharedPrefix(prefix_keys, prefix_values)
    output, _ = shared_prefix_attention(nn.Module(), query, key, value, None, scaling=0.3, shared_prefix=shared)
    assert shared.calls == 1 and output.shape == (batch, length, heads, dim)
    full_keys = torch.cat([prefix_keys.repeat_interleave(rows, dim=0), key], dim=2).repeat_interleave(4, dim=1)
    full_values = torch.cat([prefix_values.repeat_interleave(rows, dim=0), value], dim=2).repeat_interleave(4, dim=1)
    mask = torch.ones(length, prefix + length, dtype=torch.bool).tril(prefix)  # query i sees keys <= prefix + i
    expected = F.scaled_dot_product_attention(query, full_keys, full_values, attn_mask=mask, scale=0.3)
    torch.testing.assert_close(output, expected.transpose(1, 2), atol=1e-5, rtol=1e-5)
    # in bfloat16 (two rounded parts, their weight rounded too) the float32 result, to bfloat16 precision
    half = [t.bfloat16() for t in (query, key, value, prefix_keys, prefix_values)]
    output, _ = shared_prefix_attention(nn.Module(), *half[:3], None, scaling=0.3, shared_prefix=SharedPrefix(*half[3:]))
    assert output.dtype == torch.bfloat16 and output.is_contiguous()
    torch.testing.assert_close(output.float(), expected.transpose(1, 2), atol=2e-2, rtol=2e-2)
    fused = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(query, full_keys[:, :, prefix:],
                                                                        full_values[:, :, prefix:], 0.0, True, scale=0.3)
    math = math_attention_with_lse(query, full_keys[:, :, prefix:], full_values[:, :, prefix:], True, 0.3)
    for got, want in zip(math, fused):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def _direct_sdpa_attention(self, hidden_states, position_embeddings, attention_mask=None, past_key_values=None,
                           **kwargs):
    """Llama attention as remote-code models write it: SDPA called directly, not through the interface."""
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb, repeat_kv

    shape = (*hidden_states.shape[:-1], -1, self.head_dim)
    query, key, value = (projection(hidden_states).view(shape).transpose(1, 2)
                         for projection in (self.q_proj, self.k_proj, self.v_proj))
    query, key = apply_rotary_pos_emb(query, key, *position_embeddings)
    if past_key_values is not None:
        key, value = past_key_values.update(key, value, self.layer_idx)
    key, value = repeat_kv(key, self.num_key_value_groups), repeat_kv(value, self.num_key_value_groups)
    causal = attention_mask is None and query.shape[2] > 1
    output = F.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask, is_causal=causal,
                                            scale=self.scaling)
    return self.o_proj(output.transpose(1, 2).reshape(*hidden_states.shape[:-1], -1)), None


def test_attention_outside_the_interface_falls_back_to_per_row_prefixes():
    model = _tiny("llama")
    for layer in model.model.layers:
        layer.self_attn.forward = types.MethodType(_direct_sdpa_attention, layer.self_attn)
    input_ids = torch.randint(0, 101, (8,), generator=torch.Generator().manual_seed(3))
    _assert_equal_to_reference(model, input_ids, (1, 4), None, TraceOptions(samples=3, window=2), shared_prefix=False)
    assert model.config._attn_implementation == "sdpa"  # the routing is undone after the trace


def test_prompt_longer_than_the_sliding_window_is_refused():
    torch.manual_seed(0)
    model = MistralForCausalLM(MistralConfig(**SMALL, num_key_value_heads=2, sliding_window=6)).eval()
    with pytest.raises(ValueError, match="9 positions, more than the sliding window .* \\(6\\)"):
        CausalTracer(model).trace(input_ids=torch.arange(9), subject_range=(0, 2), answer_id=3,
                                  options=TraceOptions(samples=2))


def test_compiled_sublayers_equal_reference_and_are_removed_after():
    from torch._dynamo.utils import counters

    model = _tiny("llama")
    tracer = CausalTracer(model, compile=True)
    input_ids = torch.randint(0, 101, (9,), generator=torch.Generator().manual_seed(4))
    _assert_equal_to_reference(model, input_ids, (0, 3), None, TraceOptions(samples=3, window=3), tracer=tracer)
    assert all("forward" not in vars(child) for layer in model.model.layers for child in layer.children())
    graphs = counters["stats"]["unique_graphs"]
    tracer.trace(input_ids=input_ids[:7], subject_range=(2, 4), answer_id=1, options=TraceOptions(samples=3))
    assert counters["stats"]["unique_graphs"] == graphs  # another prompt length reuses the dynamic-shape graphs


def test_compiled_sublayers_put_back_a_forward_set_on_the_instance():
    model = _tiny("llama")
    mlp = model.model.layers[0].mlp
    own_forward = types.MethodType(lambda self, x: type(self).forward(self, x), mlp)  # as accelerate's hooks do
    mlp.forward = own_forward
    runner = CausalTracer(model, compile=True).runner
    with runner.compiled_sublayers():
        assert mlp.forward is not own_forward
    assert vars(mlp)["forward"] is own_forward
    assert "forward" not in vars(model.model.layers[0].self_attn)


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


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_logprob_and_whole_attribute_metrics_equal_the_reference_loop(family):
    """attribute: log P of all the attribute's tokens, teacher-forced (the input ends with the attribute but
    its last token); logprob: log P of the first. Both traced by the fast engine as by ROME's loop."""
    model = _tiny(family)
    prompt = torch.randint(0, 101, (7,), generator=torch.Generator().manual_seed(3))
    attribute = [11, 42, 7]
    options = TraceOptions(samples=3, window=3, metric="attribute", max_batch_tokens=50)
    result = _assert_equal_to_reference(model, torch.cat([prompt, torch.tensor(attribute[:-1])]), (1, 3), None, options,
                                        answer_ids=attribute)
    assert result.answer_ids == attribute and result.options.metric == "attribute"
    assert np.isnan(result.scores["hidden"][7:]).all() and not np.isnan(result.scores["hidden"][:7]).any()
    assert result.high_score < 0  # a sum of log-probabilities
    by_hand = torch.log_softmax(model(input_ids=torch.cat([prompt, torch.tensor(attribute[:-1])])[None]).logits[0, -3:], -1)
    assert result.high_score == pytest.approx(sum(by_hand[j, t].item() for j, t in enumerate(attribute)), abs=1e-5)
    logprob = _assert_equal_to_reference(model, prompt, (1, 3), 11, TraceOptions(samples=3, window=3, metric="logprob"))
    assert logprob.high_score == pytest.approx(torch.log_softmax(model(input_ids=prompt[None]).logits[0, -1], -1)[11].item(),
                                               abs=1e-5)


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
    with pytest.raises(ValueError, match=r"answer ids \[500\] are outside the vocabulary"):
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
    encoding = encode(tokenizer, prompt)
    assert not encoding.bos  # SmolLM2's tokenizer adds none
    input_ids = torch.tensor(encoding.ids)
    subject_range = subject_token_range(encoding, prompt.index(subject), prompt.index(subject) + len(subject))
    assert tokenizer.decode(input_ids[subject_range[0]:subject_range[1]]).strip() == "Italy"
    answer_id = answer_token(tokenizer, prompt, "Rome").id
    assert tokenizer.decode([answer_id]) == " Rome"
    # a position before the subject, the subject's last and the prompt's last: every kind of site, 3/5 of the cost
    options = TraceOptions(samples=3, token_range=(0, subject_range[1] - 1, len(input_ids) - 1))
    result = _assert_equal_to_reference(model, input_ids, subject_range, answer_id, options)
    assert result.high_score > 0.3 and result.low_score < result.high_score


@pytest.mark.slow
def test_trace_text_prompt_defaults_to_top_prediction(smollm2):
    model, tokenizer = smollm2
    result = trace_text_prompt(CausalTracer(model, model_name="smollm2"), tokenizer, "The capital of Italy is", "Italy",
                               options=TraceOptions(samples=2, kinds=("hidden",)))
    assert result.answer == " Rome"
    assert result.tokens[result.subject_range[0]].strip() == "Italy"


@pytest.mark.slow
def test_a_subject_twice_and_a_corrupted_score_above_the_clean_one_are_said(smollm2):
    """The first occurrence by default, with a warning; `subject_occurrence` chooses; both recorded. Corrupting
    "Paris" here raises P(" a"): the result warns that sigma or the subject is doubtful."""
    model, tokenizer = smollm2
    tracer, prompt = CausalTracer(model, model_name="smollm2"), "Paris is the capital of France, and Paris is"
    options = TraceOptions(samples=2, kinds=("hidden",), token_range=(9,))  # the last position only: cheap
    first = trace_text_prompt(tracer, tokenizer, prompt, "Paris", "a", options)
    assert first.subject_range == (0, 1) and first.metadata["subject_char_span"] == [0, 5]
    assert first.low_score > first.high_score and first.warnings == [
        f"the corrupted score {first.low_score:.4g} is above the clean score {first.high_score:.4g}: a sign of a bad "
        f"noise sigma ({first.noise_std:.3g}) or of corrupted positions 0..0 that are not the subject",
        "subject 'Paris' occurs 2 times in the prompt; the first (characters 0..4) was corrupted: choose with "
        "subject_occurrence= (0 to 1)"]
    second = trace_text_prompt(tracer, tokenizer, prompt, "Paris", "a", options, subject_occurrence=1)
    assert second.subject_range == (8, 9) and second.metadata["subject_char_span"] == [36, 41]
    assert second.metadata["subject_occurrence"] == 1 and not any("occurs" in w for w in second.warnings)
    with pytest.raises(ValueError, match=r"subject_occurrence=2: 'Paris' occurs 2 time\(s\) .*choose 0 to 1"):
        trace_text_prompt(tracer, tokenizer, prompt, "Paris", "a", options, subject_occurrence=2)
