"""Numeric precision for training: mixed precision only where the device supports it."""

from __future__ import annotations

from typing import Literal

from textguard.errors import ConfigError

Precision = Literal["fp32", "bf16", "fp16"]


def resolve_precision(requested: str) -> Precision:
    """fp32/bf16/fp16 for this machine: mixed precision only where the device supports it.

    auto: bf16 on a GPU that has it, else fp16 on a GPU; on CPU, bf16 where the CPU has bf16 units
    (AVX512-BF16/AMX: the `make demo` training loop took 465 against 705 s here), else fp32.
    Mixed precision keeps fp32 master weights; only the matrix products run in bf16.
    """
    import torch

    from textguard.hardware import cpu_has_native_bf16

    cuda = torch.cuda.is_available()
    bf16_ok = cuda and torch.cuda.is_bf16_supported()
    if requested == "auto":
        if cuda:
            return "bf16" if bf16_ok else "fp16"
        return "bf16" if cpu_has_native_bf16() else "fp32"
    if requested == "fp16" and not cuda:
        raise ConfigError(
            "training.precision=fp16 needs a CUDA GPU; use fp32 (or bf16 on a CPU with bf16 units)"
        )
    if requested == "bf16" and cuda and not bf16_ok:
        raise ConfigError("training.precision=bf16: this GPU has no bf16 support; use fp16 or auto")
    return requested  # type: ignore[return-value]
