"""oneDNN-packed linears under greedy generation: the same logits, every layer given back."""

import pytest
import torch

from ludwig_llm.inference.packed_linear import onednn_available, packed_linears


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()


@pytest.mark.skipif(not onednn_available(), reason="this torch build has no oneDNN linear operators")
def test_packed_linears_keep_the_logits_and_give_every_layer_back(tiny):
    ids = torch.tensor([[1, 5, 9, 20, 33], [1, 7, 7, 40, 2]])
    linears = [m for m in tiny.modules() if type(m) is torch.nn.Linear]
    with torch.inference_mode():
        plain = tiny(input_ids=ids).logits
        with packed_linears(tiny) as patched:
            assert patched == len(linears) > 0
            with packed_linears(tiny) as nested:
                assert nested == 0  # already packed: the inner block leaves them alone
            packed = tiny(input_ids=ids).logits
    assert torch.allclose(packed, plain, atol=1e-5, rtol=1e-4)
    assert not any("forward" in vars(m) for m in linears)  # every layer has its own forward again


def test_packed_linears_leave_non_fp32_weights_alone(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.bfloat16)
    with packed_linears(model) as patched:
        assert patched == 0


def test_packed_linears_restore_forward_when_the_block_fails(tiny):
    with pytest.raises(RuntimeError, match="boom"):
        with packed_linears(tiny):
            raise RuntimeError("boom")
    assert not any("forward" in vars(m) for m in tiny.modules())
