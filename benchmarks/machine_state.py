"""What the machine did while a run ran: the GPU's clocks, use, power and throttle reasons
(NVML) and the host's stolen and idle CPU time (/proc/stat). Sampled from the bench's own
process, which only waits on the run, so that a run slower than planned says whether the
card was throttled, starved by its host, or neither (docs/BENCHMARKS.md, "Machine G").

    with MachineState() as state:
        subprocess.run(...)
    row["machine_state"] = state.summary()
"""

from __future__ import annotations

import statistics
import threading
import time
from pathlib import Path

POLL_S = 2.0
# NVML's clocks-event reasons that mean the card ran below its clocks for a cause other than
# being idle or at its application clocks (power, thermal, slowdown)
THROTTLING = {
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x20: "sw_thermal",
    0x40: "hw_thermal",
    0x80: "hw_power_brake",
}


def cpu_times() -> list[int] | None:
    """The host's aggregate CPU jiffies (user nice system idle iowait irq softirq steal)."""
    try:
        first = Path("/proc/stat").read_text().splitlines()[0].split()
    except OSError:
        return None
    return [int(x) for x in first[1:9]]


def _reasons(pynvml, handle) -> int:
    """The clocks-event reasons bitmask (named "throttle reasons" before NVML 12.2)."""
    read = getattr(pynvml, "nvmlDeviceGetCurrentClocksEventReasons", None)
    return (read or pynvml.nvmlDeviceGetCurrentClocksThrottleReasons)(handle)


class MachineState:
    """Polls NVML every POLL_S seconds in a thread between __enter__ and __exit__."""

    def __init__(self, index: int = 0):
        self.index = index
        self.samples: list[dict] = []
        self._stop = threading.Event()
        self._cpu_start = None
        self._cpu_end = None

    def __enter__(self):
        self._cpu_start = cpu_times()
        self._children = _children_cpu_s()
        self._started = time.perf_counter()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=10)
        self._cpu_end = cpu_times()
        self._children = _children_cpu_s() - self._children
        self._wall = time.perf_counter() - self._started
        return False

    def _poll(self) -> None:
        try:
            import pynvml

            pynvml.nvmlInit()
            handle = pynvml.nvmlDeviceGetHandleByIndex(self.index)
        except Exception:  # no NVIDIA GPU: the CPU figures only
            return
        while not self._stop.wait(POLL_S):
            try:
                self.samples.append(
                    {
                        "sm_mhz": pynvml.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_SM),
                        "util": pynvml.nvmlDeviceGetUtilizationRates(handle).gpu,
                        "watts": pynvml.nvmlDeviceGetPowerUsage(handle) / 1000,
                        "celsius": pynvml.nvmlDeviceGetTemperature(handle, 0),
                        "reasons": _reasons(pynvml, handle),
                    }
                )
            except Exception:
                continue
        pynvml.nvmlShutdown()

    def summary(self) -> dict:
        """Medians over the samples while the card was busy (use above 50 %), the share of
        them throttled and by what, and the host's stolen / idle share of its CPU time."""
        busy = [s for s in self.samples if s["util"] > 50]
        row: dict = {"samples": len(self.samples), "busy_samples": len(busy)}
        if busy:
            row |= {
                "sm_mhz": statistics.median(s["sm_mhz"] for s in busy),
                "util": statistics.median(s["util"] for s in busy),
                "watts": round(statistics.median(s["watts"] for s in busy), 1),
                "celsius": statistics.median(s["celsius"] for s in busy),
                "throttled_share": round(
                    sum(1 for s in busy if s["reasons"] & sum(THROTTLING)) / len(busy), 3
                ),
                "throttled_by": sorted(
                    {name for s in busy for bit, name in THROTTLING.items() if s["reasons"] & bit}
                ),
            }
        if self._cpu_start and self._cpu_end:
            delta = [b - a for a, b in zip(self._cpu_start, self._cpu_end, strict=True)]
            total = sum(delta) or 1
            row |= {"cpu_steal_share": round(delta[7] / total, 4),
                    "cpu_idle_share": round(delta[3] / total, 4)}  # fmt: skip
        if getattr(self, "_wall", 0):  # above 1: the run's main thread was busy all along
            row["run_cpu_per_wall"] = round(self._children / self._wall, 2)
        return row


def _children_cpu_s() -> float:
    """CPU seconds (user and system) this process's finished children used."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def cpu_model() -> str | None:
    """The host's CPU model name and the clock /proc/cpuinfo reports now."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return None
    name = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), "")
    mhz = [float(ln.split(":", 1)[1]) for ln in lines if ln.startswith("cpu MHz")]
    return f"{name} at {statistics.median(mhz):.0f} MHz" if mhz else name


if __name__ == "__main__":  # a ten-second reading of an idle machine
    import json

    with MachineState() as state:
        time.sleep(10)
    print(json.dumps(state.summary() | {"cpu": cpu_model()}))
