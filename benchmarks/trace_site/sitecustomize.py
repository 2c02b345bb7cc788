"""Loaded by every Python process started with this folder on PYTHONPATH (gpu_run.sh with
PEAK_TRACE=1): record CUDA allocations for benchmarks/peak_trace.py when FT_PEAK_TRACE names
a folder. Processes that never touch the GPU write nothing."""

import os
import sys

if os.environ.get("FT_PEAK_TRACE"):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        import peak_trace

        peak_trace.start(os.environ["FT_PEAK_TRACE"])
    except ImportError:  # no torch in this interpreter
        pass
    finally:
        sys.path.pop(0)
