"""Every registered config class: defaults valid, round trip, name/description; the class-definition-time
default check; and adding a type with one class and one decorator."""

import dataclasses
from typing import List, Optional

import marshmallow
import pytest

import ludwig_llm.schema  # noqa: F401  (fills every registry)
from ludwig_llm.errors import ConfigValidationError
from ludwig_llm.schema import load_config
from ludwig_llm.schema import registry as registries
from ludwig_llm.schema.adapters import AdapterPostprocessorConfig, BaseAdapterConfig
from ludwig_llm.schema.base import BaseConfig, config_class
from ludwig_llm.schema.fields import Impact, Range, nested, option
from ludwig_llm.schema.json_schema import config_json_schema
from ludwig_llm.schema.registry import Registry, adapter_registry

ALL_REGISTRIES = {
    name: value for name, value in vars(registries).items() if isinstance(value, Registry)
}
# Registries whose entries are config sections (a typed union picks one by its key); the retrieval
# registry holds plain marker classes named by `prompt.retrieval.type`.
# The chat template registry holds template classes named by `prompt.chat_template`.
CONFIG_REGISTRIES = {name: reg for name, reg in ALL_REGISTRIES.items() if name not in ("retrieval_registry", "chat_template_registry")}

REGISTERED = [
    pytest.param(reg_name, key, cls, id=f"{reg_name.replace('_registry', '')}:{key}")
    for reg_name, reg in ALL_REGISTRIES.items()
    for key, cls in reg.items()
]
REGISTERED_CONFIGS = [p for p in REGISTERED if p.values[0] in CONFIG_REGISTRIES]


def required_values(cls) -> dict:
    """The fields a class needs given (no default), filled from their documented examples."""
    values = {}
    for field in dataclasses.fields(cls):
        if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            meta = field.metadata["marshmallow_field"].metadata if "marshmallow_field" in field.metadata else field.metadata["metadata"]
            example = meta["example"]
            assert example is not None, f"{cls.__name__}.{field.name} is required but documents no example"
            values[field.name] = example
    return values


def base_config(**overrides) -> dict:
    config = {
        "base_model": "some/model",
        "input_features": [{"name": "input", "type": "text"}],
        "output_features": [{"name": "response", "type": "text"}],
    }
    config.update(overrides)
    return config


def config_with(reg_name: str, key) -> dict:
    """A minimal full config that puts registered type ``key`` of ``reg_name`` into its section."""
    if reg_name == "adapter_registry":
        return base_config(adapter={"type": key}, trainer={"type": "finetune"})
    if reg_name == "quantization_registry":
        return base_config(quantization={"bits": key}, adapter="lora", trainer="finetune")
    if reg_name == "rope_scaling_registry":
        return base_config(model_parameters={"rope_scaling": {"type": key}})
    if reg_name == "trainer_registry":
        return base_config(trainer={"type": key})
    if reg_name == "input_feature_registry":
        return base_config(input_features=[{"name": "input", "type": key}])
    if reg_name == "output_feature_registry":
        return base_config(output_features=[{"name": "response", "type": key}], trainer="none")
    if reg_name == "backend_registry":
        return base_config(backend={"type": key})
    if reg_name == "strategy_registry":
        return base_config(backend={"type": "ray", "trainer": {"num_workers": 2, "strategy": {"type": key}}})
    if reg_name == "split_registry":
        return base_config(preprocessing={"split": {"type": key}})
    if reg_name == "retrieval_registry":
        return base_config(prompt={"retrieval": {"type": key, "k": 2}})
    if reg_name == "model_type_registry":
        return base_config(model_type=key)
    if reg_name == "category_decoder_registry":
        return base_config(output_features=[{"name": "label", "type": "category", "decoder": {"type": key}}], trainer="finetune")
    if reg_name == "chat_template_registry":
        return base_config(input_features=[{"name": "messages", "type": "chat"}], prompt={"chat_template": key})
    raise AssertionError(f"no test config for {reg_name}: add one here")


def test_every_registry_is_covered_and_not_empty():
    assert set(ALL_REGISTRIES) >= {
        "adapter_registry", "quantization_registry", "rope_scaling_registry", "trainer_registry",
        "input_feature_registry", "output_feature_registry", "backend_registry", "split_registry",
        "retrieval_registry", "model_type_registry",
    }
    for name, reg in ALL_REGISTRIES.items():
        assert len(reg) > 0, name
        config_with(name, reg.names()[0])  # raises if a new registry has no test config


@pytest.mark.parametrize("reg_name,key,cls", REGISTERED)
def test_name_and_description_exist_and_are_not_empty(reg_name, key, cls):
    assert isinstance(cls.name(), str) and cls.name().strip()
    assert isinstance(cls.description(), str) and cls.description().strip()


@pytest.mark.parametrize("reg_name,key,cls", REGISTERED_CONFIGS)
def test_loads_with_defaults_and_round_trips(reg_name, key, cls):
    loaded = cls.from_dict(required_values(cls))
    assert isinstance(loaded, cls)
    dumped = loaded.to_dict()
    assert cls.from_dict(dumped) == loaded
    assert cls.from_dict(dumped).to_dict() == dumped
    # the defaults a class declares are the ones loading fills in
    for field in dataclasses.fields(cls):
        if field.default is not dataclasses.MISSING:
            assert getattr(loaded, field.name) == field.default, field.name
        elif field.default_factory is not dataclasses.MISSING:
            assert getattr(loaded, field.name) == field.default_factory(), field.name


@pytest.mark.parametrize("reg_name,key,cls", REGISTERED_CONFIGS)
def test_every_default_is_valid(reg_name, key, cls):
    schema = cls.Schema()
    for name, field in schema.fields.items():
        default = field.load_default
        if default is marshmallow.missing or default is None:
            continue
        value = default() if callable(default) else default
        value = value.to_dict() if isinstance(value, BaseConfig) else value
        assert schema.validate({**required_values(cls), name: value}) == {}, f"{cls.__name__}.{name} default {value!r}"
    instance = cls.from_dict(required_values(cls))
    assert schema.validate(instance.to_dict()) == {}


@pytest.mark.parametrize("reg_name,key,cls", REGISTERED_CONFIGS)
def test_key_field_matches_registered_name(reg_name, key, cls):
    """The class registered as `lora` has `type: lora` (`bits: 4` for 4-bit quantization) and only that."""
    field_name = "bits" if reg_name == "quantization_registry" else "model_type" if reg_name == "model_type_registry" else "type"
    loaded = cls.from_dict(required_values(cls))
    assert getattr(loaded, field_name) == key
    others = [k for k in ALL_REGISTRIES[reg_name].names() if k != key]
    for other in others:
        with pytest.raises(marshmallow.ValidationError) as info:
            cls.from_dict({**required_values(cls), field_name: other})
        assert field_name in info.value.messages


@pytest.mark.parametrize("reg_name,key,cls", REGISTERED)
def test_every_registered_type_is_valid_in_a_full_config_and_round_trips(reg_name, key, cls):
    config = load_config(config_with(reg_name, key))
    assert load_config(config.to_dict()) == config
    assert type(config).from_dict(config.to_dict()) == config


def test_full_config_with_every_section_set_round_trips():
    config = load_config(
        base_config(
            input_features=[{"name": "question", "type": "text", "column": "q", "preprocessing": {"max_sequence_length": 128}}],
            output_features=[{"name": "answer", "type": "text", "column": "a", "generation_metrics": False}],
            prompt={"template": "{__task__}\n{__context__}\n{__sample__}", "task": "Answer.", "retrieval": {"type": "random", "k": 2}},
            adapter={"type": "lora", "r": 16, "target_modules": ["q_proj", "v_proj"], "postprocessor": {"merge_adapter_into_base_model": True}},
            quantization={"bits": 8, "llm_int8_threshold": 5.0},
            model_parameters={"rope_scaling": {"type": "yarn", "factor": 4.0}, "neftune_noise_alpha": 5.0},
            generation={"max_new_tokens": 10, "do_sample": True, "temperature": 0.7, "stop_strings": ["\n\n"]},
            trainer={"type": "finetune", "epochs": 1, "optimizer": {"type": "sgd", "momentum": 0.9}},
            preprocessing={"split": {"type": "fixed", "column": "part"}, "sample_size": 100},
            backend={"type": "ray", "trainer": {"num_workers": 2, "resources_per_worker": {"CPU": 2, "GPU": 1}}},
        )
    )
    dumped = config.to_dict()
    assert type(config).from_dict(dumped) == config
    assert load_config(dumped) == config
    assert load_config(dumped).to_dict() == dumped


def test_loading_fills_every_default():
    config = load_config(base_config())
    assert config.adapter is None and config.quantization is None
    assert config.trainer.type == "none"
    assert config.backend.type == "local"
    assert config.preprocessing.split.type == "random"
    assert config.prompt.template is None
    assert config.input_feature.preprocessing.max_sequence_length == 512
    assert config.generation.max_new_tokens == 64


# ---- the class-definition-time default check ------------------------------------------------------


def test_a_default_outside_its_range_cannot_be_defined():
    with pytest.raises(marshmallow.ValidationError, match="out of range"):

        @config_class
        class BadRange(BaseConfig):
            """A default below its own minimum."""

            r: int = option(0, "Rank.", min=1)


def test_a_default_outside_its_choices_cannot_be_defined():
    with pytest.raises(marshmallow.ValidationError, match="is not one of"):

        @config_class
        class BadChoice(BaseConfig):
            """A default that is not an allowed value."""

            mode: str = option("fast", "Mode.", choices=["slow", "medium"])


def test_config_class_checks_defaults_that_bypass_option():
    """Even a hand-built field is checked when the class is defined."""
    with pytest.raises(TypeError, match="defaults that break its own rules"):

        @config_class
        class BadHandBuilt(BaseConfig):
            """A validator the default breaks."""

            r: int = dataclasses.field(default=0, metadata={"metadata": {"description": "Rank."}, "validate": Range(min=1)})


def test_every_field_needs_a_description():
    with pytest.raises(ValueError, match="description"):
        option(1, "  ")


# ---- adding a type is one class and one decorator -------------------------------------------------


@pytest.fixture
def dummy_adapter():
    @adapter_registry.register("dummy_test_adapter")
    @config_class
    class DummyAdapterConfig(BaseAdapterConfig):
        """A test-only adapter with one ranged option."""

        title = "Dummy"
        type: str = option("dummy_test_adapter", "Adapter type.", choices=["dummy_test_adapter"])
        width: int = option(4, "Width of the dummy update.", min=1, impact=Impact.HIGH)
        target_modules: Optional[List[str]] = option(None, "Modules to adapt.")
        pretrained_adapter_weights: Optional[str] = option(None, "Saved weights.")
        postprocessor: AdapterPostprocessorConfig = nested(AdapterPostprocessorConfig, "Post-training steps.")

    try:
        yield DummyAdapterConfig
    finally:
        adapter_registry.unregister("dummy_test_adapter")


def test_a_new_adapter_type_is_validated_once_registered(dummy_adapter):
    config = load_config(base_config(adapter={"type": "dummy_test_adapter", "width": 7}, trainer="finetune"))
    assert isinstance(config.adapter, dummy_adapter)
    assert config.adapter.width == 7
    assert config.adapter.peft_params() == {"width": 7, "target_modules": None}
    assert load_config(base_config(adapter="dummy_test_adapter", trainer="finetune")).adapter.width == 4

    with pytest.raises(ConfigValidationError) as info:
        load_config(base_config(adapter={"type": "dummy_test_adapter", "width": 0, "widht": 3}, trainer="finetune"))
    paths = {issue.path: issue.message for issue in info.value.issues}
    assert "out of range" in paths["adapter.width"]
    assert "Did you mean 'width'?" in paths["adapter.widht"]

    # cross-field rules apply to it like to any adapter
    with pytest.raises(ConfigValidationError) as info:
        load_config(base_config(adapter="dummy_test_adapter", trainer="none"))
    assert [issue.path for issue in info.value.issues] == ["adapter.pretrained_adapter_weights"]

    # and the JSON Schema offers it
    adapter_variants = config_json_schema()["properties"]["adapter"]["anyOf"]
    assert any(v.get("properties", {}).get("type", {}).get("enum") == ["dummy_test_adapter"] for v in adapter_variants)


def test_a_near_miss_of_a_new_adapter_type_is_suggested(dummy_adapter):
    with pytest.raises(ConfigValidationError) as info:
        load_config(base_config(adapter="dummy_test_adaptr", trainer="finetune"))
    assert "Did you mean 'dummy_test_adapter'?" in str(info.value)


def test_the_dummy_adapter_is_gone_after_the_test():
    assert "dummy_test_adapter" not in adapter_registry
    with pytest.raises(ConfigValidationError):
        load_config(base_config(adapter="dummy_test_adapter", trainer="finetune"))


def test_registering_a_name_twice_is_refused():
    with pytest.raises(ValueError, match="already registered"):
        adapter_registry.register("lora")(object)


def test_an_adapter_class_missing_a_field_every_adapter_needs_is_refused_when_defined():
    """The checks and trainers read `pretrained_adapter_weights` and `postprocessor` on every adapter:
    forgetting one fails at class definition, not with an AttributeError in the middle of a run."""
    with pytest.raises(TypeError, match="must declare pretrained_adapter_weights, postprocessor"):

        @adapter_registry.register("incomplete_test_adapter")
        @config_class
        class IncompleteAdapterConfig(BaseAdapterConfig):
            """Lacks the shared fields."""

            type: str = option("incomplete_test_adapter", "Adapter type.", choices=["incomplete_test_adapter"])

    assert "incomplete_test_adapter" not in adapter_registry
