"""Base-model resolution, loading and PEFT adapters.

Import the submodules directly (``ludwig_llm.models.loader`` etc.); each keeps
torch, transformers and peft imports inside functions so the CLI starts fast.
"""
