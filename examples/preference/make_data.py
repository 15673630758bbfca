"""Writes the preference examples' data: arithmetic questions whose chosen answer shows the sum and states the
result in one fixed sentence, and whose rejected answer is a vague guess (a style the base model never prefers).

    data.csv  prompt, chosen, rejected   (dpo, orpo)
    kto.csv   prompt, response, label    (kto: each pair gives a desirable and an undesirable row)
    grpo.csv  pair, answer               (grpo: "17 and 42" -> "42", the larger number, scored by exact match)

Run: python examples/preference/make_data.py
"""

import csv
import os
import random

HERE = os.path.dirname(os.path.abspath(__file__))
VAGUE = ["I think it is around {n}, maybe.", "Hard to say, perhaps {n} or so.", "Probably something like {n}?",
         "Not sure, could be about {n}."]


def rows(count: int = 120, seed: int = 0):
    rng = random.Random(seed)
    for _ in range(count):
        a, b = rng.randint(2, 60), rng.randint(2, 60)
        guess = a + b + rng.choice([-3, -2, -1, 0, 1, 2, 3])
        yield {"prompt": f"What is {a} plus {b}?", "chosen": f"{a} + {b} = {a + b}. The answer is {a + b}.",
               "rejected": rng.choice(VAGUE).format(n=guess)}


def main() -> None:
    pairs = list(rows())
    with open(os.path.join(HERE, "data.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["prompt", "chosen", "rejected"])
        writer.writeheader()
        writer.writerows(pairs)
    with open(os.path.join(HERE, "kto.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["prompt", "response", "label"])
        writer.writeheader()
        for pair in pairs:
            writer.writerow({"prompt": pair["prompt"], "response": pair["chosen"], "label": True})
            writer.writerow({"prompt": pair["prompt"], "response": pair["rejected"], "label": False})

    rng = random.Random(1)
    with open(os.path.join(HERE, "grpo.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["pair", "answer"])
        writer.writeheader()
        for _ in range(120):
            a, b = rng.sample(range(2, 100), 2)
            writer.writerow({"pair": f"{a} and {b}", "answer": str(max(a, b))})


if __name__ == "__main__":
    main()
