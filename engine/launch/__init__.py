"""Several processes: accelerate's configs, the launch's token, the environment."""
