"""The finetune loop itself (run_finetune with synthetic token rows): gradient accumulation,
evaluation every N steps, early stopping with the best weights restored, checkpoint contents,
exact resumption, and the 4-bit (QLoRA) path reaching the adapter weights."""

from __future__ import annotations

import json
import os
import tempfile

import pytest
import torch
from safetensors.torch import load_file

from ludwig_llm.results import CHECKPOINTS_DIR, MODEL_DIR, latest_checkpoint_in, list_checkpoints
from ludwig_llm.schema import load_config
from ludwig_llm.trainers import checkpoint as checkpoint_module
from ludwig_llm.trainers.finetune import FineTuneJob, run_finetune
from ludwig_llm.trainers.session import LocalSession
from tests.conftest import tiny_config

PAD_ID = 3  # the tiny tokenizer's <pad>


def synthetic_rows(count: int, length: int = 12, prompt: int = 6, seed: int = 0, vary: bool = False):
    """Token rows with the loss on the last ``length - prompt`` tokens; equal lengths unless ``vary``."""
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for i in range(count):
        n = length + (i % 5 if vary else 0)
        ids = torch.randint(10, 300, (n,), generator=generator).tolist()
        rows.append({"input_ids": ids, "labels": [-100] * prompt + ids[prompt:]})
    return rows


def job_for(config: dict, base: str, train_rows, validation_rows=(), save_model=False) -> FineTuneJob:
    return FineTuneJob(config_dict=load_config(config).to_dict(), base_model_path=base, train_rows=list(train_rows),
                       validation_rows=list(validation_rows), pad_token_id=PAD_ID, save_model=save_model)


def run(config: dict, base: str, run_dir, train_rows, validation_rows=(), resume_from=None, save_model=False) -> dict:
    os.makedirs(run_dir, exist_ok=True)
    session = LocalSession(str(run_dir), load_config(config).trainer.checkpoints_to_keep, resume_from)
    return run_finetune(job_for(config, base, train_rows, validation_rows, save_model), session)


def checkpoint_weights(run_dir, step: int) -> dict:
    return load_file(os.path.join(run_dir, CHECKPOINTS_DIR, f"step-{step:08d}", checkpoint_module.WEIGHTS_FILE))


def assert_same_weights(a: dict, b: dict, atol=0.0):
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=atol, msg=name)


def scripted_metrics(monkeypatch, losses):
    """Replace teacher-forced evaluation by a script of validation losses, one per evaluation."""
    calls = []

    def fake(model, rows, **kwargs):
        value = losses[len(calls)]
        calls.append(value)
        return {"loss": value, "perplexity": float(torch.tensor(value).exp()), "next_token_accuracy": 0.0}

    monkeypatch.setattr("ludwig_llm.trainers.finetune.teacher_forced_metrics", fake)
    return calls


def test_gradient_accumulation_equals_the_large_batch(tiny_model_dir, tmp_path):
    """batch 2 x 4 accumulation == batch 8: same batches (no length grouping), same updates and logged losses.

    SGD, because Adam turns float-rounding differences in near-zero gradients into full-size steps.
    """
    rows = synthetic_rows(32)
    common = {"max_steps": 3, "checkpoint_steps": 3, "group_by_length": False, "learning_rate": 0.5,
              "optimizer": {"type": "sgd"}}
    big = tiny_config(tiny_model_dir, trainer={**common, "batch_size": 8, "gradient_accumulation_steps": 1})
    small = tiny_config(tiny_model_dir, trainer={**common, "batch_size": 2, "gradient_accumulation_steps": 4})
    stats_big = run(big, tiny_model_dir, tmp_path / "big", rows)
    stats_small = run(small, tiny_model_dir, tmp_path / "small", rows)
    assert stats_big["total_steps"] == stats_small["total_steps"] == 3
    assert [s["step"] for s in stats_small["steps"]] == [1, 2, 3]
    for a, b in zip(stats_big["steps"], stats_small["steps"]):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)
        assert a["learning_rate"] == pytest.approx(b["learning_rate"])
    big_weights = checkpoint_weights(tmp_path / "big", 3)
    assert_same_weights(big_weights, checkpoint_weights(tmp_path / "small", 3), atol=1e-6)
    assert any(name.endswith("lora_B.default.weight") and t.abs().max() > 1e-3 for name, t in big_weights.items())


def test_loss_is_normalised_by_target_tokens_across_micro_batches(tiny_model_dir, tmp_path):
    """Rows of different lengths, grouped by length: batch 2 x 4 accumulation == batch 8, because each
    micro-batch's summed token loss is divided by the target tokens of the whole step, not averaged per
    micro-batch (which weighs a token of a short micro-batch more). 32 rows give both runs the same
    length-grouped global batches (one mega-batch of 8 rows each)."""
    rows = synthetic_rows(32, vary=True)
    assert len({sum(label != -100 for label in row["labels"]) for row in rows}) == 5
    common = {"max_steps": 3, "checkpoint_steps": 3, "group_by_length": True, "learning_rate": 0.5,
              "optimizer": {"type": "sgd"}}
    big = tiny_config(tiny_model_dir, trainer={**common, "batch_size": 8, "gradient_accumulation_steps": 1})
    small = tiny_config(tiny_model_dir, trainer={**common, "batch_size": 2, "gradient_accumulation_steps": 4})
    stats_big = run(big, tiny_model_dir, tmp_path / "big", rows)
    stats_small = run(small, tiny_model_dir, tmp_path / "small", rows)
    for a, b in zip(stats_big["steps"], stats_small["steps"], strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5, abs=1e-6)
    assert_same_weights(checkpoint_weights(tmp_path / "big", 3), checkpoint_weights(tmp_path / "small", 3), atol=1e-6)


def test_adalora_penalty_counts_once_per_step_whatever_the_accumulation(tiny_model_dir, tmp_path):
    """peft adds AdaLoRA's orthogonality penalty to every forward pass's loss; the first step's loss (before any
    update) is the same with 1 or 4 micro-batches only if each of the 4 carries a quarter of it."""
    rows = synthetic_rows(32, vary=True)
    adapter = {"_replace": True, "type": "adalora", "init_r": 4, "target_r": 2, "orth_reg_weight": 0.5,
               "target_modules": ["q_proj", "v_proj"]}
    common = {"max_steps": 1, "optimizer": {"type": "sgd"}}
    big = tiny_config(tiny_model_dir, adapter=adapter, trainer={**common, "batch_size": 8})
    small = tiny_config(tiny_model_dir, adapter=adapter, trainer={**common, "batch_size": 2, "gradient_accumulation_steps": 4})
    first_big = run(big, tiny_model_dir, tmp_path / "big", rows)["steps"][0]["loss"]
    first_small = run(small, tiny_model_dir, tmp_path / "small", rows)["steps"][0]["loss"]
    assert first_small == pytest.approx(first_big, rel=1e-5)


def test_validation_loss_is_token_weighted(tiny_model_dir):
    """The validation loss is the summed token loss over all target tokens, whatever the batching."""
    from transformers import AutoModelForCausalLM

    from ludwig_llm.data.tokenize import PaddingCollator
    from ludwig_llm.inference.teacher_forcing import teacher_forced_metrics

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    rows = synthetic_rows(5, vary=True, prompt=3)
    collate = PaddingCollator(PAD_ID)
    total, count = 0.0, 0
    with torch.no_grad():
        for row in rows:
            labels = torch.tensor([row["labels"]])
            logits = model(input_ids=torch.tensor([row["input_ids"]])).logits
            total += torch.nn.functional.cross_entropy(logits[0, :-1], labels[0, 1:], reduction="sum").item()
            count += int((labels[0, 1:] != -100).sum())
    for batch_size in (1, 2, 5):
        metrics = teacher_forced_metrics(model, rows, batch_size=batch_size, collate=collate, device=torch.device("cpu"))
        assert metrics["loss"] == pytest.approx(total / count, rel=1e-5), batch_size


def test_the_best_weights_directory_is_removed_when_training_fails(tiny_model_dir, tmp_path, monkeypatch):
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))
    seen_during_training = []
    original = LocalSession.save_checkpoint

    def save_then_die(self, write, at_step, metrics):
        original(self, write, at_step, metrics)
        seen_during_training.extend(os.listdir(temporary))
        raise Interrupted("training failed")

    monkeypatch.setattr(LocalSession, "save_checkpoint", save_then_die)
    config = tiny_config(tiny_model_dir, trainer={"max_steps": 3, "batch_size": 4, "checkpoint_steps": 1, "eval_steps": 1})
    with pytest.raises(Interrupted):
        run(config, tiny_model_dir, tmp_path / "run", synthetic_rows(8), synthetic_rows(2, seed=1))
    assert any(name.startswith("ludwig_llm_best_") for name in seen_during_training)
    assert not [name for name in os.listdir(temporary) if name.startswith("ludwig_llm_best_")]


def test_steps_per_epoch_count_partial_accumulation(tiny_model_dir, tmp_path):
    # 36 rows / batch 2 = 18 micro-batches; 4 per step -> 4 full steps and a partial one per epoch.
    config = tiny_config(tiny_model_dir, trainer={"max_steps": None, "epochs": 2, "batch_size": 2,
                                                  "gradient_accumulation_steps": 4, "logging_steps": 1})
    stats = run(config, tiny_model_dir, tmp_path / "run", synthetic_rows(36, length=8, prompt=4))
    assert stats["total_steps"] == 10 and stats["epochs_completed"] == 2
    assert [s["epoch"] for s in stats["steps"]] == [0] * 5 + [1] * 5
    # the partial step's loss is rescaled to a full step's weight, not a quarter of it
    assert stats["steps"][4]["loss"] == pytest.approx(stats["steps"][3]["loss"], rel=0.3)


def test_evaluates_every_n_steps_or_each_epoch(tiny_model_dir, tmp_path):
    rows, validation = synthetic_rows(16, vary=True), synthetic_rows(4, seed=1)
    every_two = tiny_config(tiny_model_dir, trainer={"max_steps": 6, "batch_size": 4, "eval_steps": 2})
    stats = run(every_two, tiny_model_dir, tmp_path / "steps", rows, validation)
    assert [e["step"] for e in stats["evaluations"]] == [2, 4, 6]
    assert set(stats["evaluations"][0]["validation"]) == {"loss", "perplexity", "next_token_accuracy"}
    per_epoch = tiny_config(tiny_model_dir, trainer={"max_steps": None, "epochs": 2, "batch_size": 8})
    stats = run(per_epoch, tiny_model_dir, tmp_path / "epochs", rows, validation)
    assert [e["step"] for e in stats["evaluations"]] == [2, 4]
    assert stats["best"]["metric"] == "loss" and stats["best"]["step"] in (2, 4)


def test_early_stopping_stops_and_restores_the_best_weights(tiny_model_dir, tmp_path, monkeypatch):
    calls = scripted_metrics(monkeypatch, [3.0, 2.0, 2.5, 2.4, 2.1, 1.0, 1.0])
    config = tiny_config(tiny_model_dir, trainer={"max_steps": 20, "batch_size": 4, "eval_steps": 1, "early_stop": 3,
                                                  "checkpoint_steps": 1, "checkpoints_to_keep": 20})
    run_dir = tmp_path / "run"
    stats = run(config, tiny_model_dir, run_dir, synthetic_rows(16), synthetic_rows(2, seed=1), save_model=True)
    assert len(calls) == 5 and stats["total_steps"] == 5
    assert stats["best"] == {"step": 2, "loss": 2.0, "metric": "loss"}
    saved = load_file(os.path.join(run_dir, MODEL_DIR, "adapter_model.safetensors"))
    best = {name.replace(".default", ""): t for name, t in checkpoint_weights(run_dir, 2).items()}
    last = {name.replace(".default", ""): t for name, t in checkpoint_weights(run_dir, 5).items()}
    assert_same_weights(saved, best)
    assert any(not torch.equal(best[n], last[n]) for n in best)


def test_higher_is_better_metric(tiny_model_dir, tmp_path, monkeypatch):
    accuracies = iter([0.1, 0.5, 0.4, 0.3])

    def fake(model, rows, **kwargs):
        return {"loss": 1.0, "perplexity": 2.7, "next_token_accuracy": next(accuracies)}

    monkeypatch.setattr("ludwig_llm.trainers.finetune.teacher_forced_metrics", fake)
    config = tiny_config(tiny_model_dir, trainer={"max_steps": 10, "batch_size": 4, "eval_steps": 1, "early_stop": 2,
                                                  "validation_metric": "next_token_accuracy"})
    stats = run(config, tiny_model_dir, tmp_path / "run", synthetic_rows(16), synthetic_rows(2, seed=1))
    assert stats["total_steps"] == 4
    assert stats["best"] == {"step": 2, "next_token_accuracy": 0.5, "metric": "next_token_accuracy"}


def test_checkpoints_hold_weights_optimizer_scheduler_rng_and_state(tiny_model_dir, tmp_path):
    config = tiny_config(tiny_model_dir, trainer={"max_steps": 5, "batch_size": 4, "checkpoint_steps": 2,
                                                  "checkpoints_to_keep": 2})
    run(config, tiny_model_dir, tmp_path / "run", synthetic_rows(16))
    root = tmp_path / "run" / CHECKPOINTS_DIR
    # every 2 steps plus the last one; only the 2 most recent are kept, no staging directory left over
    assert sorted(os.listdir(root)) == ["step-00000004", "step-00000005"]
    files = set(os.listdir(root / "step-00000004"))
    assert {checkpoint_module.WEIGHTS_FILE, checkpoint_module.OPTIMIZER_FILE, checkpoint_module.SCHEDULER_FILE,
            checkpoint_module.RNG_FILE, checkpoint_module.STATE_FILE} <= files
    state = json.loads((root / "step-00000004" / checkpoint_module.STATE_FILE).read_text())
    assert state["step"] == 4 and [s["step"] for s in state["steps"]] == [1, 2, 3, 4]
    optimizer = torch.load(root / "step-00000004" / checkpoint_module.OPTIMIZER_FILE, weights_only=True)
    assert optimizer["state"] and all(s["step"] == 4 for s in optimizer["state"].values())
    scheduler = torch.load(root / "step-00000004" / checkpoint_module.SCHEDULER_FILE, weights_only=True)
    assert scheduler["last_epoch"] == 4
    weights = load_file(root / "step-00000004" / checkpoint_module.WEIGHTS_FILE)
    assert weights and all("lora_" in name for name in weights)


class Interrupted(Exception):
    pass


def interrupt_after_checkpoint(monkeypatch, step: int):
    original = LocalSession.save_checkpoint

    def save_then_die(self, write, at_step, metrics):
        original(self, write, at_step, metrics)
        if at_step == step:
            raise Interrupted(f"killed after the checkpoint of step {step}")

    monkeypatch.setattr(LocalSession, "save_checkpoint", save_then_die)


def test_resume_continues_exactly_where_it_stopped(tiny_model_dir, tmp_path, monkeypatch):
    """Interrupted after step 3 and resumed == never interrupted: same weights, optimizer and log.

    Dropout, length-grouped shuffling and a mid-epoch stop make every piece of saved state matter.
    """
    config = tiny_config(tiny_model_dir, adapter={"dropout": 0.1},
                         trainer={"max_steps": 7, "batch_size": 4, "checkpoint_steps": 3, "eval_steps": 2,
                                  "checkpoints_to_keep": 5})
    rows, validation = synthetic_rows(24, vary=True), synthetic_rows(4, seed=1)
    straight = run(config, tiny_model_dir, tmp_path / "straight", rows, validation)

    with monkeypatch.context() as patch:
        interrupt_after_checkpoint(patch, 3)
        with pytest.raises(Interrupted):
            run(config, tiny_model_dir, tmp_path / "resumed", rows, validation)
    assert latest_checkpoint_in(str(tmp_path / "resumed")).endswith("step-00000003")
    resumed = run(config, tiny_model_dir, tmp_path / "resumed", rows, validation,
                  resume_from=latest_checkpoint_in(str(tmp_path / "resumed")))

    assert resumed["total_steps"] == straight["total_steps"] == 7
    assert resumed["steps"] == straight["steps"]
    assert resumed["evaluations"] == straight["evaluations"]
    assert_same_weights(checkpoint_weights(tmp_path / "straight", 7), checkpoint_weights(tmp_path / "resumed", 7))
    a = torch.load(tmp_path / "straight" / CHECKPOINTS_DIR / "step-00000007" / "optimizer.pt", weights_only=True)
    b = torch.load(tmp_path / "resumed" / CHECKPOINTS_DIR / "step-00000007" / "optimizer.pt", weights_only=True)
    for key in a["state"]:
        torch.testing.assert_close(a["state"][key]["exp_avg"], b["state"][key]["exp_avg"], rtol=0, atol=0)


def test_resume_after_the_best_step_restores_the_best_weights(tiny_model_dir, tmp_path, monkeypatch):
    """The best weights seen before an interruption survive it (they are not only in a temporary file)."""
    scripted_metrics(monkeypatch, [1.0, 0.5, 0.9, 0.8, 0.7])
    config = tiny_config(tiny_model_dir, trainer={"max_steps": 5, "batch_size": 4, "eval_steps": 1,
                                                  "checkpoint_steps": 1, "checkpoints_to_keep": 10})
    run_dir = tmp_path / "run"
    rows, validation = synthetic_rows(16), synthetic_rows(2, seed=1)
    with monkeypatch.context() as patch:
        interrupt_after_checkpoint(patch, 3)
        with pytest.raises(Interrupted):
            run(config, tiny_model_dir, run_dir, rows, validation)
    stats = run(config, tiny_model_dir, run_dir, rows, validation, resume_from=latest_checkpoint_in(str(run_dir)),
                save_model=True)
    assert stats["best"]["step"] == 2 and stats["total_steps"] == 5
    saved = load_file(os.path.join(run_dir, MODEL_DIR, "adapter_model.safetensors"))
    best = {name.replace(".default", ""): t for name, t in checkpoint_weights(run_dir, 2).items()}
    assert_same_weights(saved, best)


def test_resume_from_the_final_checkpoint_only_saves(tiny_model_dir, tmp_path):
    config = tiny_config(tiny_model_dir, trainer={"max_steps": 2, "batch_size": 4, "checkpoint_steps": 1})
    rows = synthetic_rows(8)
    first = run(config, tiny_model_dir, tmp_path / "run", rows)
    again = run(config, tiny_model_dir, tmp_path / "run", rows, resume_from=latest_checkpoint_in(str(tmp_path / "run")),
                save_model=True)
    assert again["total_steps"] == 2 and again["steps"] == first["steps"]
    assert len(list_checkpoints(str(tmp_path / "run" / CHECKPOINTS_DIR))) == 2
    assert os.path.isfile(tmp_path / "run" / MODEL_DIR / "adapter_model.safetensors")
