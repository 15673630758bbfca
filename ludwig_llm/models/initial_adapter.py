"""LoRA initializations that move part of the base weights into the adapter (PiSSA, OLoRA, CorDA): the saved adapter
is converted into a plain LoRA on the unchanged base model.

peft starts these adapters from a decomposition of the weights and leaves only the residual in the base layers.
Saved as is, the adapter is right only where the loader redoes that decomposition: peft does for PiSSA and OLoRA
(randomized, so not reproduced, for `pissa_niter_N`), cannot for CorDA (it needs the calibration data), and
tools that load plain LoRA (serving engines, merges elsewhere) never do. So the initial adapter is kept aside when
it is created, and the saved adapter is converted against it (peft's `path_initial_model_for_weight_conversion`)
into a plain LoRA of rank 2r: the saved run loads, predicts and merges like any LoRA."""

from __future__ import annotations

import os
import tempfile
from typing import Optional

_INITIAL_ADAPTER = "initial_adapter"  # the adapter name peft gives the initial weights while converting
_KEPT_ATTRIBUTE = "ludwig_llm_initial_adapter"


def changes_base_weights(peft_config) -> bool:
    """Whether this adapter's initialization leaves a residual in the base weights (`pissa`, `pissa_niter_N`, `olora`, `corda`)."""
    init = getattr(peft_config, "init_lora_weights", None)
    return isinstance(init, str) and (init in ("olora", "corda") or init.startswith("pissa"))


def keep_initial_adapter(peft_model) -> None:
    """Save the just-initialized adapter aside (removed with the model) for the conversion when the run is saved."""
    kept = tempfile.TemporaryDirectory(prefix="ludwig_llm_initial_adapter_")
    peft_model.save_pretrained(os.path.join(kept.name, _INITIAL_ADAPTER))
    object.__setattr__(peft_model, _KEPT_ATTRIBUTE, kept)  # a plain attribute, not a module or parameter


def initial_adapter_path(model) -> Optional[str]:
    """Where ``model``'s initial adapter was kept (see `changes_base_weights`), for ``save_pretrained(path_initial_model_for_weight_conversion=)``;
    None for any other model."""
    kept = getattr(model, "__dict__", {}).get(_KEPT_ATTRIBUTE)
    return os.path.join(kept.name, _INITIAL_ADAPTER) if kept is not None else None
