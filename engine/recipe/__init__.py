"""The training recipe the runner calls and the exported script copies verbatim."""
