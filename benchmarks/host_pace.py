"""How fast this machine launches small GPU work: what paces a step's fixed part
(docs/BENCHMARKS.md, "A step's pace is the machine's"). Printed beside each run_time case
so that runs on several machines can tell whether a few seconds' probe predicts a whole
run's pace:

    python benchmarks/host_pace.py        # one JSON line (a GPU machine)
"""

from __future__ import annotations

import json
import time


def launches_us(repeats: int = 20000) -> float:
    """Microseconds a tiny in-place kernel takes from Python, launch-bound."""
    import torch

    x = torch.zeros(16, device="cuda")
    for _ in range(1000):
        x.add_(1)
    torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(repeats):
        x.add_(1)
    torch.cuda.synchronize()
    return (time.perf_counter() - started) / repeats * 1e6


def lora_layer_ms(repeats: int = 200) -> float:
    """Milliseconds a forward and backward of one NF4 4096 x 4096 linear with a rank-16 LoRA
    take on 8 tokens: no compute to speak of, only launches and the Python around them."""
    import bitsandbytes as bnb
    import torch
    from peft import LoraConfig, get_peft_model

    base = torch.nn.Sequential(
        bnb.nn.Linear4bit(4096, 4096, compute_dtype=torch.bfloat16, quant_type="nf4")
    ).cuda()
    model = get_peft_model(base, LoraConfig(r=16, target_modules=["0"]))
    x = torch.randn(1, 8, 4096, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    for _ in range(20):
        model(x).sum().backward()
    torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(repeats):
        model(x).sum().backward()
    torch.cuda.synchronize()
    return (time.perf_counter() - started) / repeats * 1e3


def main() -> None:
    import os

    import torch

    row = {
        "probe": "host_pace",
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "gpu": torch.cuda.get_device_name(0),
        "gpu_uuid": str(torch.cuda.get_device_properties(0).uuid),
        "load_1m": os.getloadavg()[0],
        "launch_us": round(launches_us(), 2),
        "lora_nf4_linear_ms": round(lora_layer_ms(), 3),
    }
    print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
