"""What an export writes: the preset, a standalone script, launch and sbatch files."""
