"""Trainer section: `finetune` updates weights; `none` is in-context learning (no parameter update).

The fine-tuning defaults are chosen for LLMs (a few epochs, a LoRA-sized learning rate), not
inherited from a generic trainer.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, ClassVar, List, Optional

import marshmallow

from ludwig_llm.schema import ludwig
from ludwig_llm.schema.base import CLASS_OF_SCHEMA, BaseConfig, config_class
from ludwig_llm.schema.fields import Impact, TypedUnion, _metadata, nested, option
from ludwig_llm.schema.registry import trainer_registry
from ludwig_llm.schema.rewards import reward_registry

VALIDATION_METRICS = ["loss", "perplexity", "next_token_accuracy"]


@config_class
class OptimizerConfig(BaseConfig):
    """The optimizer that updates trainable parameters."""

    title = "Optimizer"

    type: str = option(
        "adamw",
        "`adamw` (torch AdamW), `adamw_8bit` and `paged_adamw_8bit` (bitsandbytes, less optimizer memory), `sgd`, "
        "or `adam` (torch Adam, Ludwig's default: `weight_decay` is added to the gradient rather than decoupled; "
        "with `weight_decay: 0` it is the same as `adamw`).",
        choices=["adamw", "adamw_8bit", "paged_adamw_8bit", "sgd", "adam"], impact=Impact.MEDIUM,
    )
    betas: List[float] = option([0.9, 0.999], "Adam's moment decay rates.", min=0.0, max=1.0, min_inclusive=True, max_inclusive=False, impact=Impact.LOW)
    eps: float = option(1e-8, "Small constant added to Adam's denominator for numerical stability; raise it (e.g. 1e-6) if fp16 training diverges.", min=0.0, min_inclusive=False, impact=Impact.LOW)
    momentum: float = option(0.0, "SGD momentum (only for `sgd`).", min=0.0, max=1.0, impact=Impact.LOW)


@config_class
class LearningRateSchedulerConfig(BaseConfig):
    """Learning-rate warm-up and decay over the training steps."""

    title = "Learning-rate schedule"

    decay: str = option(
        "cosine", "Shape of the decay after warm-up: `cosine`, `linear` (both to zero at the last step) or `constant`.",
        choices=["cosine", "linear", "constant"], impact=Impact.MEDIUM,
    )
    warmup_fraction: float = option(
        0.03, "Fraction of all optimizer steps spent warming up linearly from zero.", min=0.0, max=1.0, impact=Impact.LOW
    )
    warmup_steps: Optional[int] = option(None, "Warm-up steps; when set, replaces `warmup_fraction`.", min=0, impact=Impact.LOW)


AUTO = "auto"


class BatchSize(marshmallow.fields.Field):
    """A batch size: a whole number of rows, or `auto` (searched when training starts)."""

    doc_type = "integer or `auto`"

    def _deserialize(self, value, attr, data, **kwargs):
        if value == AUTO or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
            return value
        raise marshmallow.ValidationError(f"must be a whole number of rows (at least 1) or '{AUTO}'.")

    def json_schema(self):
        return {"anyOf": [{"type": "integer", "minimum": 1}, {"const": AUTO}]}


def _batch_size(default: int, description: str, impact: Impact):
    description += (" `auto` searches for it when training starts: powers of two from 1, each tried on the longest "
                    "training rows, up to the first that runs out of memory; the one with the most rows per second is "
                    "used, saved with the model, and reported in the training statistics (`batch_size_search`).")
    meta = {"description": description, "impact": impact, "example": None, "internal": False}
    return dataclasses.field(default=default, metadata={"marshmallow_field": BatchSize(load_default=default, dump_default=default, metadata=meta)})


def _regular_expression(pattern):
    if pattern is not None:
        try:
            re.compile(pattern)
        except re.error as error:
            raise marshmallow.ValidationError(f"not a valid regular expression: {error}.") from None
    return pattern


class BaseTrainerConfig(BaseConfig):
    """Common to every trainer type."""

    # The function that trains, "module:function", called as train(run: ludwig_llm.trainers.run.TrainingRun) -> statistics.
    implementation: ClassVar[str]
    evaluates_test_split: ClassVar[bool] = False  # `train` (not only `experiment`) evaluates on the test split


@trainer_registry.register("finetune")
@config_class
class FineTuneTrainerConfig(BaseTrainerConfig):
    """Supervised fine-tuning: trains the adapter (or the whole model) to produce the target after the prompt."""

    title = "Fine-tune"
    implementation = "ludwig_llm.trainers.finetune_launch:train"
    type: str = option("finetune", "Trainer type.", choices=["finetune"], impact=Impact.HIGH)
    epochs: int = option(3, "Passes over the training set.", min=1, impact=Impact.HIGH)
    max_steps: Optional[int] = option(None, "Stop after this many optimizer steps; when set, it overrides `epochs`.", min=1, impact=Impact.MEDIUM)
    learning_rate: float = option(
        2e-4, "Peak learning rate. 1e-4 to 3e-4 suits LoRA; full fine-tuning usually wants 1e-5 to 5e-5.",
        min=0.0, min_inclusive=False, impact=Impact.HIGH,
    )
    batch_size: Any = _batch_size(
        4, "Rows per forward pass. With several Ray workers the rows are shared among them (each takes `batch_size / workers`), "
        "so the optimizer sees the same batch whatever the number of workers.", Impact.HIGH)
    eval_batch_size: Any = _batch_size(8, "Rows per forward pass during evaluation (forward passes only, for `auto`).", Impact.LOW)
    gradient_accumulation_steps: int = option(
        1, "Forward passes summed before each optimizer step; the effective batch is `batch_size * gradient_accumulation_steps` rows, "
        "whatever the number of workers.",
        min=1, impact=Impact.MEDIUM,
    )
    optimizer: OptimizerConfig = nested(OptimizerConfig, "The optimizer that updates the trainable weights (the adapter, or the whole model without one), and its settings.")
    learning_rate_scheduler: LearningRateSchedulerConfig = nested(LearningRateSchedulerConfig, "Warm-up and decay of the learning rate.")
    weight_decay: float = option(0.0, "Decoupled weight decay on trainable weights (not biases or norms).", min=0.0, impact=Impact.LOW)
    max_grad_norm: Optional[float] = option(1.0, "Clip the global gradient norm to this value; null turns clipping off.", min=0.0, min_inclusive=False, impact=Impact.LOW)
    precision: str = option(
        "auto",
        "Numeric precision of training (and of the frozen base model's weights): `auto` picks bf16 on GPUs that support it, "
        "fp16 on other GPUs and fp32 on the CPU. `bf16` on a CPU with native bf16 (AVX512-BF16 or AMX) trains with bf16 "
        "autocast and a bf16 base: measured 1.4-1.65x the fp32 step (bf16 matmuls 2.4x), with losses equal to about 1e-4; "
        "on other CPUs it stays fp32, which emulated bf16 would only slow. `auto` keeps fp32 on the CPU even where bf16 is "
        "faster, because bf16 changes results (greedy outputs can differ) and `auto` also sets prediction's precision: "
        "choose `bf16` to trade them for speed. fp16 is GPU-only.",
        choices=["auto", "fp32", "bf16", "fp16"], impact=Impact.MEDIUM,
    )
    gradient_checkpointing: bool = option(
        False, "Recompute activations in the backward pass instead of storing them: much less memory, about 30% slower.", impact=Impact.MEDIUM
    )
    eval_steps: Optional[int] = option(None, "Evaluate on the validation split every N optimizer steps; null evaluates once per epoch.", min=1, impact=Impact.LOW)
    validation_metric: str = option(
        "loss", "Validation metric that picks the best checkpoint and drives early stopping.", choices=VALIDATION_METRICS, impact=Impact.MEDIUM
    )
    early_stop: int = option(
        0, "Stop after this many evaluations without improvement of `validation_metric`; 0 turns early stopping off.", min=0, impact=Impact.LOW
    )
    checkpoint_steps: Optional[int] = option(
        None, "Save a resumable checkpoint every N optimizer steps; null saves one at the end of each epoch.", min=1, impact=Impact.LOW
    )
    checkpoints_to_keep: int = option(2, "Most recent checkpoints kept on disk; older ones are deleted.", min=1, impact=Impact.LOW)
    group_by_length: bool = option(
        True, "Batch rows of similar length together, which wastes less compute on padding. Batch order stays random.", impact=Impact.LOW
    )
    packing: bool = option(
        False, "Pack several rows into each sequence (first-fit decreasing, up to `preprocessing.global_max_sequence_length` "
        "tokens, or the batch's longest row when that is not set), so less compute goes to padding. Position ids restart at "
        "each row and attention never crosses rows (a block-diagonal causal mask built from the position ids, exact with "
        "eager and SDPA attention; flash-attention's variable-length path on a GPU). Loss is taken per row as without "
        "packing, so the loss and its gradient are the same. `batch_size` still counts rows: each batch's rows are packed "
        "together, then the packs are shared among workers. Not with prompt-learning adapters (prompt, prefix or p-tuning), "
        "whose virtual tokens every row needs.", impact=Impact.MEDIUM,
    )
    packing_max_sequences_per_pack: Optional[int] = option(
        None, "With `packing`, the most rows in one pack; null sets no limit beyond the length.", min=1, impact=Impact.LOW
    )
    logging_steps: int = option(10, "Record the training loss every N optimizer steps.", min=1, impact=Impact.LOW)
    seed: int = option(42, "Random seed for shuffling, dropout and adapter initialization.", impact=Impact.LOW)
    layers_to_freeze_regex: Optional[str] = option(
        None, "Freeze every parameter whose name matches this regular expression (Python `re.search`, so it may match "
        "anywhere in the name; with an adapter the names carry peft's `base_model.model.` prefix). A pattern that "
        "matches no parameter is refused when the model is built. Null freezes nothing beyond what the adapter freezes.",
        example=r"model\.layers\.(0|1)\.", impact=Impact.MEDIUM, validate=_regular_expression,
    )

    @marshmallow.pre_load
    def _ludwig_spellings(self, data, **kwargs):
        """Ludwig's `enable_gradient_checkpointing` and `train_steps`."""
        data = ludwig.rename(data, "enable_gradient_checkpointing", "gradient_checkpointing")
        return ludwig.rename(data, "train_steps", "max_steps")


@trainer_registry.register("none")
@config_class
class NoneTrainerConfig(BaseTrainerConfig):
    """In-context learning: no parameter is updated. `train` builds the model, saves it, and evaluates on the test split."""

    title = "None (in-context learning)"
    implementation = "ludwig_llm.trainers.none:train"
    evaluates_test_split = True  # measuring the prompt is the point of a run without training
    type: str = option("none", "Trainer type.", choices=["none"], impact=Impact.HIGH)
    eval_batch_size: int = option(8, "Rows per forward pass during evaluation.", min=1, impact=Impact.LOW)
    seed: int = option(42, "Random seed for retrieval sampling and data splits.", impact=Impact.LOW)


# ---------------------------------------------------------------- preference trainers (dpo, orpo, kto) and grpo

PREFERENCE_VALIDATION_METRICS = ["loss", "reward_accuracy", "reward_margin"]


@config_class
class _BetaTrainerConfig(FineTuneTrainerConfig):
    """A trainer with a coefficient `<type>_beta` (dpo, orpo, kto, grpo)."""

    beta_key: ClassVar[str]  # the type's own name of the KL coefficient, which Ludwig's examples spell `beta`

    @marshmallow.pre_load
    def _ludwig_beta(self, data, **kwargs):
        """Ludwig's examples spell the type's `<type>_beta` as `beta` (one hook, inherited by every such type)."""
        if not (isinstance(data, dict) and "beta" in data):
            return data
        return ludwig.rename(data, "beta", CLASS_OF_SCHEMA[type(self)].beta_key)


@config_class
class _PreferenceTrainerConfig(_BetaTrainerConfig):
    """The finetune loop's settings, with a preference loss in place of the token cross-entropy."""

    # No `auto`: the batch size search measures single-sequence rows, a preference row holds two.
    batch_size: int = option(4, "Preference rows (pairs for dpo/orpo, completions for kto) per forward pass.", min=1, impact=Impact.HIGH)
    eval_batch_size: int = option(8, "Preference rows per forward pass during evaluation.", min=1, impact=Impact.LOW)
    learning_rate: float = option(
        5e-5, "Peak learning rate. Preference training wants a smaller one than supervised fine-tuning (5e-6 to 1e-4 with LoRA).",
        min=0.0, min_inclusive=False, impact=Impact.HIGH,
    )
    validation_metric: str = option(
        "loss", "Validation metric that picks the best checkpoint and drives early stopping: the preference `loss` (lower is "
        "better), `reward_accuracy` (share of validation rows whose reward orders chosen above rejected) or `reward_margin` "
        "(mean chosen minus rejected reward).", choices=PREFERENCE_VALIDATION_METRICS, impact=Impact.MEDIUM,
    )


@config_class
class _ReferenceTrainerConfig(_PreferenceTrainerConfig):
    """A preference trainer with a reference model (dpo, kto)."""

    precompute_ref_log_probs: bool = option(
        False, "Compute the reference model's log-probabilities of every row once before training, instead of one extra "
        "forward pass per step; without an adapter the reference copy is then freed.", impact=Impact.LOW,
    )


@config_class
class _PairTrainerConfig(_PreferenceTrainerConfig):
    """A preference trainer whose rows hold a chosen and a rejected response."""

    rejected_column: str = option(
        "rejected", "Column holding the rejected response of each row; the output feature's column holds the chosen one.", impact=Impact.HIGH
    )


@trainer_registry.register("dpo")
@config_class
class DPOTrainerConfig(_PairTrainerConfig, _ReferenceTrainerConfig):
    """Direct Preference Optimization: raises the chosen response's likelihood over the rejected one's, relative to the
    reference model (the base model with the adapter switched off, or a frozen copy without an adapter). Data: a prompt,
    a chosen response (the output feature) and a rejected response (`rejected_column`)."""

    title = "DPO"
    implementation = "ludwig_llm.trainers.preference_launch:train"
    type: str = option("dpo", "Trainer type.", choices=["dpo"], impact=Impact.HIGH)
    beta_key = "dpo_beta"
    dpo_beta: float = option(
        0.1, "Strength of the pull towards the reference model: larger keeps the policy closer to it. Rewards are "
        "`dpo_beta` times the log-probability ratio to the reference.", min=0.0, min_inclusive=False, impact=Impact.HIGH,
    )
    dpo_loss_type: str = option(
        "sigmoid", "`sigmoid` (the DPO paper's loss), `ipo` (squared distance of the margin to 1/(2 beta), Azar et al. 2023; "
        "less prone to overfitting deterministic preferences) or `hinge` (SLiC's hinge on the margin).",
        choices=["sigmoid", "ipo", "hinge"], impact=Impact.MEDIUM,
    )
    dpo_label_smoothing: float = option(
        0.0, "Assumed share of flipped preference labels (conservative DPO), for the `sigmoid` loss; 0 trusts every label.",
        min=0.0, max=0.5, max_inclusive=False, impact=Impact.LOW,
    )


@trainer_registry.register("orpo")
@config_class
class ORPOTrainerConfig(_PairTrainerConfig):
    """Odds Ratio Preference Optimization: supervised fine-tuning on the chosen response plus a penalty on the odds of the
    rejected one; no reference model. Data: as `dpo`."""

    title = "ORPO"
    implementation = "ludwig_llm.trainers.preference_launch:train"
    type: str = option("orpo", "Trainer type.", choices=["orpo"], impact=Impact.HIGH)
    beta_key = "orpo_beta"
    orpo_beta: float = option(
        0.1, "Weight of the odds-ratio term against the chosen response's token loss (the paper's lambda).",
        min=0.0, min_inclusive=False, impact=Impact.HIGH,
    )


@trainer_registry.register("kto")
@config_class
class KTOTrainerConfig(_ReferenceTrainerConfig):
    """Kahneman-Tversky Optimization: learns from single responses labelled desirable or not, no pairs needed. Data: a
    prompt, a response (the output feature) and a boolean `label_column` (true: desirable)."""

    title = "KTO"
    implementation = "ludwig_llm.trainers.preference_launch:train"
    type: str = option("kto", "Trainer type.", choices=["kto"], impact=Impact.HIGH)
    beta_key = "kto_beta"
    kto_beta: float = option(0.1, "Strength of the pull towards the reference model, as `dpo_beta`.", min=0.0, min_inclusive=False, impact=Impact.HIGH)
    desirable_weight: float = option(1.0, "Loss weight of desirable rows; raise it when they are fewer than undesirable ones.", min=0.0, min_inclusive=False, impact=Impact.MEDIUM)
    undesirable_weight: float = option(1.0, "Loss weight of undesirable rows.", min=0.0, min_inclusive=False, impact=Impact.MEDIUM)
    label_column: str = option("label", "Boolean column: true when the row's response is desirable, false when it is not.", impact=Impact.HIGH)


# ---------------------------------------------------------------- grpo: online sampling, rewards

@config_class
class RolloutConfig(BaseConfig):
    """How the `grpo` trainer samples its completions; the other decoding settings (stop strings, repetition penalty)
    are the `generation` section's."""

    title = "Rollouts"
    max_new_tokens: Optional[int] = option(None, "Most tokens per sampled completion; null uses `generation.max_new_tokens`.", min=1, impact=Impact.HIGH)
    temperature: float = option(1.0, "Sampling temperature: 1 samples the policy as it is, the on-policy choice.", min=0.0, min_inclusive=False, impact=Impact.HIGH)
    top_p: float = option(1.0, "Nucleus sampling mass; 1 turns it off.", min=0.0, max=1.0, min_inclusive=False, impact=Impact.MEDIUM)
    top_k: int = option(0, "Sample only among the k most likely tokens; 0 turns it off.", min=0, impact=Impact.MEDIUM)


class RewardList(marshmallow.fields.List):
    """`rewards`: registered reward types, each a mapping with its `type` (or a bare type name)."""

    def __init__(self, **kwargs):
        super().__init__(TypedUnion(reward_registry), **kwargs)

    def _serialize(self, value, attr, obj, **kwargs):
        return None if value is None else [reward.to_dict() for reward in value]


@trainer_registry.register("grpo")
@config_class
class GRPOTrainerConfig(_BetaTrainerConfig):
    """Group Relative Policy Optimization (Shao et al. 2024, DeepSeekMath): each step samples `grpo_num_generations`
    completions of every prompt from the current model, scores them with `rewards`, and raises the likelihood of the
    completions that beat their group's mean reward, with a KL penalty towards the reference model (the base model with
    the adapter switched off, or a frozen copy without an adapter). Data: a prompt (the input feature) and, for rewards
    that compare, a reference answer (the output feature's column, or the reward's `column`)."""

    title = "GRPO"
    implementation = "ludwig_llm.trainers.grpo_launch:train"
    type: str = option("grpo", "Trainer type.", choices=["grpo"], impact=Impact.HIGH)
    beta_key = "grpo_beta"
    batch_size: int = option(4, "Prompts per forward pass; each brings `grpo_num_generations` completions.", min=1, impact=Impact.HIGH)
    eval_batch_size: int = option(8, "Prompts per generation batch during validation.", min=1, impact=Impact.LOW)
    learning_rate: float = option(5e-5, "Peak learning rate (1e-6 to 1e-4 with LoRA).", min=0.0, min_inclusive=False, impact=Impact.HIGH)
    validation_metric: str = option(
        "reward", "Validation metric that picks the best checkpoint and drives early stopping: the mean weighted `reward` "
        "of greedy completions of the validation prompts (higher is better).", choices=["reward"], impact=Impact.MEDIUM,
    )
    grpo_beta: float = option(0.04, "Weight of the KL penalty towards the reference model; 0 drops it (and the reference "
                              "forward pass).", min=0.0, impact=Impact.HIGH)
    grpo_epsilon: float = option(0.2, "Clip range of the probability ratio to the sampling policy (PPO's epsilon).",
                                 min=0.0, min_inclusive=False, impact=Impact.MEDIUM)
    grpo_num_generations: int = option(4, "Completions sampled per prompt (the group whose rewards are normalised).", min=2, impact=Impact.HIGH)
    rollout: RolloutConfig = nested(RolloutConfig, "Sampling of the completions.", impact=Impact.HIGH)
    rewards: List[Any] = dataclasses.field(default_factory=list, metadata={"marshmallow_field": RewardList(metadata=_metadata(
        "Reward types scoring each completion; a completion's reward is their weighted sum. The Python API adds "
        "functions: `LudwigLLM(config).train(dataset, rewards=[fn])`, `fn(completions, rows) -> [float]`. At least "
        "one reward, in the config or the API, is needed.", Impact.HIGH, [{"type": "exact_match", "weight": 1.0}], False,
        registry=reward_registry, key="type"))})
