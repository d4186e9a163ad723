"""What this machine's processors can compute natively (read once per process)."""

from __future__ import annotations

import functools

#: CPU flags (Linux /proc/cpuinfo) of native bf16 matrix instructions: AVX512-BF16 (Intel Cooper Lake
#: and later, AMD Zen 4 and later) and AMX. Without them torch emulates bf16, slower than fp32.
BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether this CPU has bf16 matrix instructions (Linux: /proc/cpuinfo; elsewhere: unknown, no)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("flags"):
                    return bool(BF16_CPU_FLAGS & set(line.split(":", 1)[1].split()))
    except OSError:
        pass
    return False


def native_bf16(device: str) -> bool:
    """Whether `device` ("cpu", "cuda", "cuda:1") computes bf16 natively."""
    if device.startswith("cuda"):
        import torch

        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    return device == "cpu" and cpu_has_native_bf16()


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask: a container's or taskset's share)."""
    import os

    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)
