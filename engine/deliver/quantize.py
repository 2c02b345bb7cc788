"""`python -m finetune_tui.engine.deliver.quantize IN OUT TYPE`: llama.cpp's quantizer
(`llama_model_quantize`) through llama-cpp-python, for users without `llama-quantize`.

A child process of `ship`: llama.cpp's log lines stay out of the command's output and a
crash inside the C library ends this process only."""

from __future__ import annotations

import ctypes
import sys


def main(argv: list[str]) -> int:
    import llama_cpp

    source, target, kind = argv
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{kind}")
    code = llama_cpp.llama_model_quantize(source.encode(), target.encode(), ctypes.byref(params))
    if code != 0:
        print(f"llama_model_quantize returned {code}", file=sys.stderr)
    return 1 if code else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
