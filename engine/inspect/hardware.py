"""What GPU(s) this machine has, through NVML (`pynvml`), or a simulated card to plan for.

No torch: NVML answers name, memory, compute capability, driver and CUDA version by itself.
"""

from __future__ import annotations

import difflib
import functools
import re
from dataclasses import dataclass, field, replace

from ..common.errors import InputError

GIB = 2**30


@dataclass
class GPU:
    index: int
    name: str
    total_gib: float
    free_gib: float
    compute_capability: tuple[int, int] | None
    bf16: bool | None
    driver: str | None
    cuda: str | None
    utilization_pct: float | None = None
    temperature_c: float | None = None
    power_w: float | None = None


@dataclass
class Hardware:
    gpus: list[GPU] = field(default_factory=list)
    simulated: bool = False
    note: str = ""

    @property
    def primary(self) -> GPU | None:
        return self.gpus[0] if self.gpus else None

    @property
    def card_name(self) -> str | None:
        """The card plans are made for (real or simulated); None on a CPU."""
        return self.primary.name if self.primary is not None else None


@dataclass(frozen=True)
class KnownGPU:
    name: str
    vram_gib: float
    compute_capability: tuple[int, int]
    bf16_tflops: float  # dense peak (fp16 before Ampere), for MFU


KNOWN_GPUS = {
    g.name: g
    for g in (
        KnownGPU("Tesla T4", 15.0, (7, 5), 65.0),
        KnownGPU("Tesla V100 16GB", 16.0, (7, 0), 125.0),
        KnownGPU("Tesla V100 32GB", 32.0, (7, 0), 125.0),
        KnownGPU("RTX 3060 12GB", 12.0, (8, 6), 51.0),
        KnownGPU("RTX 3090", 24.0, (8, 6), 71.0),
        KnownGPU("RTX 4060 Laptop 8GB", 8.0, (8, 9), 60.0),
        KnownGPU("RTX 4070 12GB", 12.0, (8, 9), 117.0),
        KnownGPU("RTX 4090", 24.0, (8, 9), 165.0),
        KnownGPU("A10 24GB", 24.0, (8, 6), 125.0),
        KnownGPU("L4 24GB", 24.0, (8, 9), 121.0),
        KnownGPU("A100 40GB", 40.0, (8, 0), 312.0),
        KnownGPU("A100 80GB", 80.0, (8, 0), 312.0),
        KnownGPU("H100 80GB", 80.0, (9, 0), 989.0),  # SXM
        KnownGPU("H100 PCIe 80GB", 80.0, (9, 0), 756.0),
        KnownGPU("H100 NVL 94GB", 94.0, (9, 0), 835.0),
        KnownGPU("H200 141GB", 141.0, (9, 0), 989.0),
    )
}


def _normalise(name: str) -> str:
    name = name.lower().replace("nvidia", "").replace("geforce", "").replace("tesla", "")
    return re.sub(r"[^a-z0-9]+", "", name)


@functools.lru_cache(maxsize=256)
def card_key(name: str) -> str:
    """One key per card model, whatever form its name takes: NVML's "NVIDIA H100 80GB HBM3"
    and a simulated "--gpu H100" are the same card (the known card's name); an unknown
    card by its normalised name. What runs measured is kept and matched by this key."""
    known = find_known_gpu(name)
    return _normalise(known.name) if known else _normalise(name)


# Words NVML adds to a card's model that name no other card: its form factor, memory kind
MAKER_WORDS = frozenset(
    {"gpu", "pcie", "sxm", "sxm2", "sxm3", "sxm4", "sxm5", "nvl", "hbm2", "hbm2e", "hbm3", "hbm3e"}
)


def find_known_gpu(name: str) -> KnownGPU | None:
    """The one known card a name means, as a user types it ('RTX 4060 Laptop', '4090',
    'A100 80') or NVML names it ('NVIDIA A100-SXM4-80GB'); None for a name several cards
    answer alike or none does (known_gpus_named)."""
    found = known_gpus_named(name)
    return found[0] if len(found) == 1 else None


def known_gpus_named(name: str) -> list[KnownGPU]:
    """The known cards a name can mean, best first: each of its words one of the card's own
    (its model, its memory size with or without 'GB') or one NVML adds (MAKER_WORDS), a
    word of the card's model among them; the cards whose whole model it names, of most
    words, ahead ('H100 PCIe' is the PCIe card, 'H100' the SXM one). Whole words, every one
    counted: an L40S is no L4, an H20 no H200, 'RTX 4070 Ti Super' no RTX 4070 and 'H100;T4'
    no T4 (a match on some of the words planned them as those); 'A100' is both A100s."""
    words = _words(name)
    ranked = []
    for known in KNOWN_GPUS.values():
        model = _words(re.sub(r"\s*\d+GB$", "", known.name))
        size = {f"{known.vram_gib:g}gb", f"{known.vram_gib:g}"}
        if words & model and words - MAKER_WORDS <= model | size:
            whole = model <= words
            ranked.append(((whole, len(model) if whole else 0), known))
    best = max((rank for rank, _ in ranked), default=None)
    return [known for rank, known in ranked if rank == best]


def _words(name: str) -> frozenset[str]:
    """A card name's words, lower case, the vendor's own left out ('RTX4090' read as
    'RTX 4090'): a word is a model ('h100', 'l4') or a size ('80gb'), never part of one."""
    name = re.sub(r"nvidia|geforce|tesla", " ", name.lower())
    return frozenset(re.findall(r"[a-z0-9]+", re.sub(r"rtx(?=\d)", "rtx ", name)))


MAX_VRAM_GIB = 100_000  # far beyond any card: a larger size is a typo


def simulated_hardware(gpu: str | None = None, vram_gib: float | None = None) -> Hardware:
    """A card you don't have: from the table by name, or any card by its VRAM."""
    if vram_gib is not None and not 0 < vram_gib <= MAX_VRAM_GIB:  # nan fails this too
        raise InputError(f"--vram {vram_gib}: must be a number of GiB above 0, at most 100000")
    if gpu is not None:
        problem = card_problem(gpu)
        if problem:
            raise InputError(f"--gpu {problem}; or give --vram GIB")
        known = find_known_gpu(gpu)
        vram = vram_gib or known.vram_gib
        card = GPU(
            0,
            known.name,
            vram,
            vram,
            known.compute_capability,
            known.compute_capability >= (8, 0),
            None,
            None,
        )
        return Hardware([card], simulated=True, note=f"simulated {known.name}")
    if vram_gib is not None:
        card = GPU(0, f"GPU with {vram_gib:g} GiB", vram_gib, vram_gib, (8, 0), True, None, None)
        return Hardware([card], simulated=True, note=f"simulated {vram_gib:g} GiB card (Ampere)")
    raise InputError("simulated hardware needs --gpu NAME or --vram GIB")


def card_problem(name: str) -> str | None:
    """Why a card name plans no card: it names none of the known ones, or several; the
    name (cut at 80 characters) first."""
    found = known_gpus_named(name)
    if len(found) == 1:
        return None
    quoted = repr(name) if len(name) <= 80 else repr(name[:80]) + f"... ({len(name):,} characters)"
    if found:
        return f"{quoted}: names {len(found)} cards ({', '.join(k.name for k in found)}): name one"
    close = difflib.get_close_matches(name, list(KNOWN_GPUS), n=3, cutoff=0.3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    return f"{quoted}: unknown card{hint}"


def hardware_for(gpu: str | None = None, vram_gib: float | None = None) -> Hardware:
    """The simulated card asked for (`--gpu` / `--vram`), else this machine's: the one rule
    both front ends plan with."""
    if gpu is not None or vram_gib is not None:  # --vram 0 or --gpu "": refused, not ignored
        return simulated_hardware(gpu=gpu, vram_gib=vram_gib)
    return detect_hardware()


def detect_hardware() -> Hardware:
    """Every NVIDIA GPU NVML sees; a clean CPU-only answer when there is none."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception as exc:  # no library, no driver, no device: all mean CPU only
        return Hardware(note=f"no NVIDIA driver found ({_reason(exc)}): training runs on the CPU")
    try:
        driver = _text(pynvml.nvmlSystemGetDriverVersion())
        cuda = _cuda_version(pynvml)
        gpus = [_read_gpu(pynvml, i, driver, cuda) for i in range(pynvml.nvmlDeviceGetCount())]
    finally:
        pynvml.nvmlShutdown()
    note = "" if gpus else "NVIDIA driver present but no GPU visible: training runs on the CPU"
    return Hardware(gpus, note=note)


def describe_hardware(hw: Hardware) -> str:
    """The cards in a few lines, for `finetune-tui detect` and the TUI's first screen.

    Rich console markup (bold names): both front ends print through Rich.
    """
    lines = ["[b]Simulated[/b] card (planning only):"] if hw.simulated else []
    for gpu in hw.gpus:
        cc = ".".join(map(str, gpu.compute_capability)) if gpu.compute_capability else "?"
        bf16 = {True: "yes", False: "no (fp16)", None: "?"}[gpu.bf16]
        lines.append(
            f"GPU {gpu.index}: [b]{gpu.name}[/b]  {gpu.total_gib:.1f} GiB total, "
            f"{gpu.free_gib:.1f} GiB free  compute {cc}  bf16 {bf16}  "
            f"driver {gpu.driver or '?'}  CUDA {gpu.cuda or '?'}"
        )
    if not hw.gpus:
        lines.append(
            "[b]No NVIDIA GPU found[/b]: training runs on the CPU. The embedded demo (a tiny "
            "model and a small task) trains for real here in about a minute."
        )
    if hw.note:
        lines.append(f"[dim]{hw.note}[/dim]")
    return "\n".join(lines)


class GpuTelemetry:
    """One NVML session for the live panel: initialised once, polled, closed at the end.

    The panel polls every second while training shares the process. A fresh session per
    poll measured 0.027 ms against 0.020 ms kept open on an H100 (benchmarks/nvml_poll.py):
    cheap either way; one session is simply how NVML is meant to be used.
    """

    def __init__(self, index: int = 0):
        self.index = index
        self._nvml = None
        self._handle = None

    def read(self) -> GPU | None:
        try:
            if self._handle is None:
                import pynvml

                pynvml.nvmlInit()
                self._nvml = pynvml
                self._handle = pynvml.nvmlDeviceGetHandleByIndex(self.index)
            return _poll_gpu(self._nvml, self._handle, self.index)
        except Exception:
            return None

    def close(self) -> None:
        if self._nvml is not None:
            _try(self._nvml.nvmlShutdown)
            self._nvml = self._handle = None


def _poll_gpu(pynvml, handle, index: int) -> GPU:
    """Only what changes during a run: memory, utilisation, temperature, power."""
    memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
    return GPU(
        index=index,
        name="",
        total_gib=memory.total / GIB,
        free_gib=memory.free / GIB,
        compute_capability=None,
        bf16=None,
        driver=None,
        cuda=None,
        utilization_pct=_try(lambda: float(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu)),
        temperature_c=_try(lambda: float(pynvml.nvmlDeviceGetTemperature(handle, 0))),
        power_w=_try(lambda: pynvml.nvmlDeviceGetPowerUsage(handle) / 1000.0),
    )


def _read_gpu(pynvml, index: int, driver: str | None, cuda: str | None) -> GPU:
    handle = pynvml.nvmlDeviceGetHandleByIndex(index)
    cc = _try(lambda: tuple(pynvml.nvmlDeviceGetCudaComputeCapability(handle)))
    return replace(
        _poll_gpu(pynvml, handle, index),
        name=_text(pynvml.nvmlDeviceGetName(handle)),
        compute_capability=cc,
        bf16=None if cc is None else cc >= (8, 0),
        driver=driver,
        cuda=cuda,
    )


def _cuda_version(pynvml) -> str | None:
    value = _try(pynvml.nvmlSystemGetCudaDriverVersion)
    return None if value is None else f"{value // 1000}.{value % 1000 // 10}"


def _try(fn):
    try:
        return fn()
    except Exception:
        return None


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _reason(exc: Exception) -> str:
    return str(exc).strip() or type(exc).__name__
