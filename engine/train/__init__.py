"""One training run: checks before it, loading, the Trainer, callbacks, the runner."""
