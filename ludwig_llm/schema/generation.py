"""Generation section: decoding settings, named as in transformers' GenerationConfig."""

from __future__ import annotations

from typing import List, Optional

import marshmallow

from ludwig_llm.schema.base import BaseConfig, config_class
from ludwig_llm.schema.fields import Impact, option


def _only_off(off, method: str, repository: str):
    """Accepts only the value that turns ``method`` off (Ludwig's configs list these keys at their defaults)."""

    def check(value):
        if value is not None and value != off:
            raise marshmallow.ValidationError(
                f"{value!r} would turn on {method}, which transformers 5 moved to a hub repository of remote code "
                f"(transformers-community/{repository}); ludwig_llm does not download code. Use "
                f"{off!r} (off), or beam search (`num_beams`) or sampling (`do_sample`) instead."
            )
        return value

    return check


@config_class
class GenerationConfig(BaseConfig):
    """How text is generated at prediction time. The default is greedy decoding."""

    title = "Generation"
    max_new_tokens: int = option(64, "Most tokens generated per row, not counting the prompt.", min=1, impact=Impact.HIGH)
    min_new_tokens: int = option(0, "Fewest tokens generated before end-of-sequence is allowed.", min=0, impact=Impact.LOW)
    do_sample: bool = option(
        False, "Sample from the distribution instead of taking the most likely token (greedy or beam search).", impact=Impact.HIGH
    )
    temperature: float = option(
        1.0, "Softens (>1) or sharpens (<1) the distribution before sampling. Used only with `do_sample`. "
        "Ludwig's `temperature: 0.0` (greedy) is read as greedy decoding (`do_sample: false`).",
        min=0.0, min_inclusive=False, impact=Impact.HIGH,
    )
    top_k: int = option(50, "Sample only among the k most likely tokens; 0 turns it off. Used only with `do_sample`.", min=0, impact=Impact.MEDIUM)
    top_p: float = option(
        1.0, "Nucleus sampling: sample among the fewest tokens whose probabilities sum to `top_p`. 1 turns it off.",
        min=0.0, max=1.0, min_inclusive=False, impact=Impact.MEDIUM,
    )
    min_p: Optional[float] = option(
        None, "Drop tokens whose probability is below `min_p` times the top token's. Null turns it off.",
        min=0.0, max=1.0, impact=Impact.LOW,
    )
    typical_p: float = option(1.0, "Locally typical sampling mass; 1 turns it off.", min=0.0, max=1.0, min_inclusive=False, impact=Impact.LOW)
    num_beams: int = option(1, "Beam search width; 1 is greedy (or sampling) decoding.", min=1, impact=Impact.MEDIUM)
    length_penalty: float = option(1.0, "Beam search: exponent on length in the score; above 1 favours longer outputs.", impact=Impact.LOW)
    early_stopping: bool = option(False, "Beam search: stop as soon as `num_beams` finished candidates exist.", impact=Impact.LOW)
    repetition_penalty: float = option(
        1.0, "Divides the score of tokens already present; above 1 discourages repetition.", min=0.0, min_inclusive=False, impact=Impact.MEDIUM
    )
    no_repeat_ngram_size: int = option(0, "Never repeat an n-gram of this size; 0 turns it off.", min=0, impact=Impact.LOW)
    stop_strings: Optional[List[str]] = option(
        None, "Generation stops when one of these strings is produced; it is cut from the output.",
        example=["\n\n", "###"], impact=Impact.MEDIUM,
    )
    use_cache: bool = option(True, "Reuse past attention keys and values (KV cache); much faster, more memory.", impact=Impact.LOW)
    pad_token_id: Optional[int] = option(
        None, "Token id that fills the rest of a row once it has finished; null uses the tokenizer's pad token "
        "(else its end-of-sequence token). Only the generated rows are affected, never the prompts.",
        min=0, impact=Impact.LOW,
    )
    # Ludwig lists these; transformers 5 moved both methods to hub repositories of remote code
    # (transformers-community/contrastive-search, .../group-beam-search), which nothing here downloads.
    penalty_alpha: Optional[float] = option(
        None, "Contrastive search's degeneration penalty (Ludwig's spelling). Only null or 0 (off) is accepted: "
        "transformers 5 moved contrastive search to a hub repository of remote code, which ludwig_llm does not download.",
        validate=_only_off(0.0, "contrastive search", "contrastive-search"), impact=Impact.LOW,
    )
    num_beam_groups: int = option(
        1, "Diverse beam search's number of beam groups (Ludwig's spelling). Only 1 (off) is accepted: transformers 5 "
        "moved diverse beam search to a hub repository of remote code, which ludwig_llm does not download.",
        validate=_only_off(1, "diverse beam search", "group-beam-search"), impact=Impact.LOW,
    )
    diversity_penalty: float = option(
        0.0, "Diverse beam search's penalty between groups (Ludwig's spelling). Only 0 (off) is accepted, "
        "see `num_beam_groups`.", validate=_only_off(0.0, "diverse beam search", "group-beam-search"), impact=Impact.LOW,
    )

    @marshmallow.pre_load
    def _ludwig_greedy_temperature(self, data, **kwargs):
        """Ludwig writes `temperature: 0.0` for greedy decoding; here greedy is `do_sample: false`."""
        if isinstance(data, dict) and data.get("temperature") == 0 and data.get("do_sample") is not True:
            data = {key: value for key, value in data.items() if key != "temperature"}
            data["do_sample"] = False
        return data
