"""Ludwig's spellings load as ours (docs/user_guide/coming_from_ludwig.md), and errors are all reported, with the
right hint: Ludwig-only sections get their own message, 'did you mean' only for typos."""

import copy

import pytest

from ludwig_llm.errors import ConfigValidationError
from ludwig_llm.schema import load_config
from ludwig_llm.schema.json_schema import config_json_schema

BASE = {
    "base_model": "some/model",
    "input_features": [{"name": "instruction", "type": "text"}],
    "output_features": [{"name": "output", "type": "text"}],
    "trainer": {"type": "finetune"},
    "adapter": "lora",
}


def with_(**sections):
    data = copy.deepcopy(BASE)
    data.update(copy.deepcopy(sections))
    return data


def problems(data) -> dict:
    with pytest.raises(ConfigValidationError) as caught:
        load_config(data)
    return {issue.path: issue.message for issue in caught.value.issues}


def test_encoder_passthrough_and_decoder_text_extractor_are_accepted():
    config = load_config(with_(input_features=[{"name": "q", "type": "text", "encoder": {"type": "passthrough"}}],
                               output_features=[{"name": "a", "type": "text", "decoder": {"type": "text_extractor"}}]))
    assert config.input_feature.encoder.type == "passthrough"
    assert config.output_feature.decoder.type == "text_extractor"
    assert "encoder.vocab_size" in str(problems(with_(
        input_features=[{"name": "q", "type": "text", "encoder": {"type": "passthrough", "vocab_size": 5}}])))


def test_temperature_zero_is_greedy_and_only_without_sampling():
    generation = load_config(with_(generation={"temperature": 0.0})).generation
    assert generation.do_sample is False and generation.temperature == 1.0
    assert "generation.temperature" in problems(with_(generation={"temperature": 0.0, "do_sample": True}))


def test_generation_keys_ludwig_lists():
    generation = load_config(with_(generation={"pad_token_id": 0, "penalty_alpha": 0.0, "num_beam_groups": 1,
                                               "diversity_penalty": 0.0})).generation
    assert generation.pad_token_id == 0
    found = problems(with_(generation={"penalty_alpha": 0.6, "num_beam_groups": 2, "diversity_penalty": 0.5}))
    assert "contrastive-search" in found["generation.penalty_alpha"]
    assert "group-beam-search" in found["generation.num_beam_groups"]
    assert "generation.diversity_penalty" in found


def test_rope_type_is_read_as_type_and_not_both():
    rope = load_config(with_(model_parameters={"rope_scaling": {"rope_type": "dynamic", "factor": 2.0}})).model_parameters.rope_scaling
    assert rope.type == "dynamic" and rope.rope_params()["rope_type"] == "dynamic"
    found = problems(with_(model_parameters={"rope_scaling": {"rope_type": "dynamic", "type": "linear", "factor": 2.0}}))
    assert "keep only 'type'" in found["model_parameters.rope_scaling.rope_type"]


def test_trainer_spellings():
    trainer = load_config(with_(trainer={"type": "finetune", "enable_gradient_checkpointing": True, "train_steps": 7,
                                         "optimizer": {"type": "adam"}, "layers_to_freeze_regex": r"layers\.0\."})).trainer
    assert (trainer.gradient_checkpointing, trainer.max_steps, trainer.optimizer.type) == (True, 7, "adam")
    assert trainer.layers_to_freeze_regex == r"layers\.0\."
    assert "not a valid regular expression" in problems(with_(trainer={"type": "finetune", "layers_to_freeze_regex": "("}))[
        "trainer.layers_to_freeze_regex"]


def test_deepspeed_zero_optimization_block_maps_onto_our_keys():
    strategy = {"type": "deepspeed", "zero_optimization": {"stage": 2, "offload_optimizer": {"device": "cpu", "pin_memory": True}}}
    config = load_config(with_(backend={"type": "ray", "trainer": {"use_gpu": True, "strategy": strategy}}))
    mapped = config.backend.trainer.strategy
    assert (mapped.zero_stage, mapped.offload_optimizer, mapped.offload_parameters) == (2, True, False)
    strategy = {"type": "deepspeed", "zero_optimization": {"stage": 3, "overlap_comm": True, "offload_param": {"device": "nvme"}}}
    found = problems(with_(backend={"type": "ray", "trainer": {"use_gpu": True, "strategy": strategy}}))
    assert "not mapped" in found["backend.trainer.strategy.zero_optimization.overlap_comm"]
    assert "NVMe" in found["backend.trainer.strategy.zero_optimization.offload_param"]


def test_ray_processor_parallelism_and_cache_dir_are_accepted():
    config = load_config(with_(backend={"type": "ray", "cache_dir": "/tmp/c", "processor": {"parallelism": 4}}))
    assert config.backend.processor.parallelism == 4 and config.backend.cache_dir == "/tmp/c"
    assert load_config(with_(backend={"type": "local", "cache_dir": "/tmp/c"})).backend.cache_dir == "/tmp/c"


def test_ludwig_only_sections_get_their_own_message_and_no_guess():
    found = problems(with_(hyperopt={}, combiner={}, ludwig_version="0.8", defaults={}, trust_remote_code=True, adapters={}))
    assert "model_parameters.trust_remote_code" in found["trust_remote_code"]
    for key in ("hyperopt", "combiner", "ludwig_version", "defaults", "adapters"):
        assert found[key].startswith(f"Ludwig's '{key}'") and "Did you mean" not in found[key], key


@pytest.mark.parametrize("data, path", [
    (with_(adapter="ln_tunin"), "adapter.type"),  # a typo of a registered type: suggested
    (with_(trainer={"type": "finetune", "learnig_rate": 0.1}), "trainer.learnig_rate"),
])
def test_typos_get_a_suggestion(data, path):
    assert "Did you mean" in problems(data)[path]


@pytest.mark.parametrize("data, path", [
    (with_(adapter="xlora"), "adapter.type"),  # another peft tuner, not a typo of lora
    (with_(trainer={"type": "ecd"}), "trainer.type"),
    (with_(generation={"num_return_sequences": 2}), "generation.num_return_sequences"),
])
def test_other_known_concepts_get_no_suggestion(data, path):
    assert "Did you mean" not in problems(data)[path]


def test_unknown_keys_are_reported_when_the_type_is_missing():
    found = problems(with_(adapter={"r": 4, "bogus": 1}))
    assert "required" in found["adapter.type"] and "adapter.bogus" in found


def test_cross_field_rules_run_beside_field_errors():
    found = problems(with_(model_parameters={"neftune_noise_alpha": -1}, generation={"min_new_tokens": 9, "max_new_tokens": 5},
                           adapter=None, quantization=4))
    assert {"model_parameters.neftune_noise_alpha", "generation.min_new_tokens", "quantization"} <= set(found)
    # a rule over an invalid section is skipped rather than guessing
    found = problems(with_(input_features=[{"type": "text"}, {"name": "b", "type": "text"}]))
    assert set(found) == {"input_features[0].name"}


def test_export_schema_has_every_default_but_none_for_required_keys():
    schema = config_json_schema()
    missing = []

    def walk(sub, path):
        for key, prop in sub.get("properties", {}).items():
            if "default" not in prop and key not in sub.get("required", []):
                missing.append(path + key)
            for variant in [prop, *prop.get("anyOf", []), *prop.get("items", {}).get("anyOf", [])]:
                if variant is not prop and "properties" in variant:
                    walk(variant, f"{path}{key}.")
            if "properties" in prop:
                walk(prop, f"{path}{key}.")

    walk(schema, "")
    assert missing == []
    assert "default" not in schema["properties"]["base_model"]
    trainer_variants = [v for v in schema["properties"]["trainer"]["anyOf"] if "properties" in v]
    assert all("default" not in v["properties"]["type"] for v in trainer_variants)
    assert schema["properties"]["trainer"]["default"]["type"] == "none"


def test_batch_size_auto_is_accepted_where_the_search_can_run():
    trainer = load_config(with_(trainer={"type": "finetune", "batch_size": "auto", "eval_batch_size": "auto"})).trainer
    assert (trainer.batch_size, trainer.eval_batch_size) == ("auto", "auto")
    assert "trainer.batch_size" in problems(with_(trainer={"type": "finetune", "batch_size": "big"}))
    ray = {"type": "ray", "trainer": {"num_workers": 2}}
    assert "one worker" in problems(with_(trainer={"type": "finetune", "batch_size": "auto"}, backend=ray))["trainer.batch_size"]
    assert "total_step" in problems(with_(trainer={"type": "finetune", "batch_size": "auto"}, adapter="adalora"))["trainer.batch_size"]
