"""Ludwig's spellings that change what runs: layers_to_freeze_regex freezes, optimizer adam is torch Adam,
generation.pad_token_id reaches transformers."""

import pytest
import torch

from ludwig_llm.errors import UserError
from ludwig_llm.inference.generation import build_generation_config
from ludwig_llm.models.build import build_llm
from ludwig_llm.schema import load_config
from ludwig_llm.trainers.optim import build_optimizer


def test_layers_to_freeze_regex_freezes_matching_weights_full_and_with_adapter(make_config):
    full = build_llm(load_config(make_config(adapter=None, trainer={"layers_to_freeze_regex": r"layers\.0\."})), for_training=True)
    frozen = {name for name, p in full.model.named_parameters() if not p.requires_grad}
    assert frozen and all("layers.0." in name for name in frozen)
    assert any(p.requires_grad for name, p in full.model.named_parameters() if "layers.1." in name)

    lora = build_llm(load_config(make_config(trainer={"layers_to_freeze_regex": r"layers\.0\..*lora_"})), for_training=True)
    trainable = [name for name, p in lora.model.named_parameters() if p.requires_grad]
    assert trainable and not any("layers.0." in name for name in trainable)


def test_layers_to_freeze_regex_that_matches_nothing_is_a_user_error(make_config):
    with pytest.raises(UserError, match="matches no parameter"):
        build_llm(load_config(make_config(trainer={"layers_to_freeze_regex": "no_such_layer"})), for_training=True)


def test_adam_is_torch_adam(make_config):
    config = load_config(make_config(trainer={"optimizer": {"type": "adam"}}))
    built = build_llm(config, for_training=True)
    assert type(build_optimizer(built.model, config.trainer)) is torch.optim.Adam


def test_generation_pad_token_id_overrides_the_tokenizers(make_config):
    config = load_config(make_config(generation={"pad_token_id": 5, "temperature": 0.0}))
    built = build_llm(config, for_training=False)
    assert build_generation_config(built.model, built.tokenizer, config.generation).pad_token_id == 5
    assert built.tokenizer.pad_token_id != 5  # so the default below is the tokenizer's, not the setting
    assert build_generation_config(built.model, built.tokenizer, load_config(make_config()).generation).pad_token_id != 5
