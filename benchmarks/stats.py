"""Summary statistics, peak memory and machine facts for the benchmark."""
import os
import platform
import statistics
from typing import Dict, Iterable, Optional

import numpy as np
import torch
import torchvision

import detectron2

try:
    import resource  # getrusage: Unix only
except ImportError:  # pragma: no cover - not Unix
    resource = None

__all__ = [
    "summarize",
    "read_proc_status_mb",
    "reset_peak_memory",
    "peak_memory",
    "machine_info",
    "minor_page_faults",
    "ALLOCATOR_ENV",
]

# environment variables that change how the process's C allocator keeps freed memory (glibc's
# MALLOC_* tunables, an allocator loaded with LD_PRELOAD); recorded with every benchmark, as
# they change CPU step times by several per cent (see BENCHMARKS.md, "Page faults")
ALLOCATOR_ENV = ("MALLOC_", "GLIBC_TUNABLES", "LD_PRELOAD")


def summarize(values: Iterable[float]) -> Dict[str, float]:
    """{"n", "median", "p90", "mean", "min", "max"} of a non-empty list of numbers."""
    xs = [float(v) for v in values]
    if not xs:
        raise ValueError("summary of an empty list of measurements")
    return {
        "n": len(xs),
        "median": statistics.median(xs),
        "p90": float(np.percentile(xs, 90)),
        "mean": statistics.fmean(xs),
        "min": min(xs),
        "max": max(xs),
    }


def read_proc_status_mb(field: str) -> Optional[float]:
    """A memory field of ``/proc/self/status`` (e.g. "VmHWM", "VmRSS") in MiB; None if the
    file or the field is missing (not Linux)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024.0  # kB
    except OSError:
        return None
    return None


def minor_page_faults() -> Optional[int]:
    """Minor page faults of this process so far (``getrusage``); None where unavailable. On
    Linux, each first touch of memory the allocator took fresh from the system (glibc maps
    large blocks on ``malloc`` and unmaps them on ``free``) counts one per 4 KiB page."""
    if resource is None:
        return None
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _ru_maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # kB on Linux


def reset_peak_memory(device: torch.device) -> bool:
    """Reset the peak-memory counters: CUDA's allocator statistics, and the process's peak RSS
    (VmHWM, by writing 5 to /proc/self/clear_refs). Returns False when the RSS peak could not
    be reset (then the peak covers the whole process life)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_memory(device: torch.device) -> Dict[str, Optional[float]]:
    """Peak memory since :func:`reset_peak_memory`, in MiB.

    ``rss_peak_mb``: the process's peak resident set (VmHWM; ru_maxrss where /proc is missing).
    ``cuda_max_allocated_mb``: torch.cuda.max_memory_allocated on a CUDA device, else None.
    ``peak_mb``: the figure compared between models: CUDA max allocated on GPU, RSS on CPU.
    """
    rss = read_proc_status_mb("VmHWM")
    if rss is None:
        rss = _ru_maxrss_mb()
    cuda = None
    if device.type == "cuda":
        cuda = torch.cuda.max_memory_allocated(device) / 2**20
    return {
        "rss_peak_mb": rss,
        "cuda_max_allocated_mb": cuda,
        "peak_mb": cuda if cuda is not None else rss,
        "peak_kind": "cuda_max_memory_allocated" if cuda is not None else "process_rss_hwm",
    }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info(device: torch.device) -> Dict[str, object]:
    """CPU model, core count, load average, GPU name and library versions."""
    info = {
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "load_avg_1_5_15": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "detectron2": detectron2.__version__,
        "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "allocator_env": {k: v for k, v in sorted(os.environ.items())
                          if k.startswith(ALLOCATOR_ENV)},
    }
    return info
