"""What the Ray backend tests share: the run they compare, and how they compare loss curves."""

from __future__ import annotations

# Workers average their own mean token losses where one process takes the mean over all the tokens of the
# global batch, and gloo sums gradients in another order: the curves agree closely, not bit for bit.
LOSS_TOLERANCE = 0.02
STEPS = 6  # 32 training rows, batch 8: one epoch and a half


def train_config(make_config, backend=None, **sections):
    trainer = {"max_steps": STEPS, "checkpoint_steps": 2, "checkpoints_to_keep": 2, **sections.pop("trainer", {})}
    config = make_config(trainer=trainer, **sections)
    if backend:
        config["backend"] = backend
    return config


def train_in_one_thread(config, dataset, output_directory):
    """A local run with one intra-op thread, like each Ray worker (Ray sets OMP_NUM_THREADS=1): on a busy
    2-core machine two spinning threads make the tiny model 10x slower, and the comparison is as valid."""
    import torch

    from ludwig_llm.api import LudwigLLM

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return LudwigLLM(config).train(dataset, output_directory=str(output_directory))
    finally:
        torch.set_num_threads(threads)


def losses(statistics) -> dict:
    return {entry["step"]: entry["loss"] for entry in statistics["steps"]}


def compare_losses(reference: dict, other: dict, label: str) -> float:
    """Print both curves side by side; return the largest difference."""
    assert sorted(reference) == sorted(other), (sorted(reference), sorted(other))
    differences = {step: abs(reference[step] - other[step]) for step in reference}
    print(f"\nstep  reference {label}  |diff|")
    for step in sorted(reference):
        print(f"{step:>4}  {reference[step]:.5f}  {other[step]:.5f}    {differences[step]:.2e}")
    print(f"max |diff| = {max(differences.values()):.2e}")
    return max(differences.values())


def relative_weight_difference(trained: dict, reference: dict, part: str) -> float:
    """|trained - reference| / |reference| over the tensors whose names contain `part`. Adam magnifies tiny
    differences of near-zero gradients element by element, so whole weights are compared, not elements."""
    import torch

    names = [name for name in reference if part in name]
    assert names, part
    difference = torch.sqrt(sum(((trained[n].float() - reference[n].float()) ** 2).sum() for n in names))
    return float(difference / torch.sqrt(sum((reference[n].float() ** 2).sum() for n in names)))
