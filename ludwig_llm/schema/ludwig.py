"""Ludwig's spellings of our settings, mapped onto ours before validation (see docs/user_guide/coming_from_ludwig.md).

Each config class that has a Ludwig spelling calls these from a marshmallow ``pre_load`` hook, so the
mapping lives next to the fields it feeds and applies wherever the class is loaded. The config is then
stored (and `render_config` shows it) in our spelling.
"""

from __future__ import annotations

from typing import Any, Dict

import marshmallow

# Top-level sections of a Ludwig config that have no counterpart here, with what to do instead.
LUDWIG_ONLY_SECTIONS: Dict[str, str] = {
    "hyperopt": "hyperparameter search is not part of ludwig_llm; remove the section and run one config "
                "per setting (or drive `ludwig_llm.api` from Ray Tune or Optuna).",
    "combiner": "the combiner joins several input features in ECD models; an LLM takes one text input, "
                "so remove the section.",
    "ludwig_version": "Ludwig writes it when it saves a config; remove it.",
    "defaults": "per-feature-type defaults are not supported; put the settings on the feature itself.",
    "trust_remote_code": "set it under `model_parameters.trust_remote_code`.",
    "adapters": "several named adapters in one model are not supported; give one `adapter` section.",
}


def rename(data: Any, ludwig_key: str, our_key: str, within: str = "") -> Any:
    """``data`` with Ludwig's ``ludwig_key`` moved to ``our_key``; both given is refused. ``within``: the key of
    ``data`` in the mapping whose hook calls this, so the error lands on the right path."""
    if not isinstance(data, dict) or ludwig_key not in data:
        return data
    if our_key in data:
        message = {ludwig_key: [f"Ludwig's name for '{our_key}', which is also given; keep only '{our_key}'."]}
        raise marshmallow.ValidationError({within: message} if within else message)
    data = dict(data)
    data[our_key] = data.pop(ludwig_key)
    return data
