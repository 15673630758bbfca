"""ludwig_llm: declarative fine-tuning, prompting and evaluation of large language models."""

__version__ = "0.1.0"
