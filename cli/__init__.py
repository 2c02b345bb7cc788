"""finetune-tui: fine-tune an LLM on the one GPU you have."""

__version__ = "0.1.0"
