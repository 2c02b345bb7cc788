"""What the machine and the model are: GPUs through NVML, config.json facts."""
