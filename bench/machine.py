"""What of the machine decides floating-point reduction order: vector extensions and BLAS builds.

Two runs with the same code, seed and thread count can still differ in low-order bits
when the CPU offers other vector extensions (torch dispatches its kernels by them:
``torch.backends.cpu.get_cpu_capability()``) or the BLAS library picks other kernels.
``bench.runner.environment`` records these probes with every run; each is computed once
per process (``lru_cache``) and never raises.
"""
from __future__ import annotations

import re
from functools import lru_cache

# /proc/cpuinfo flags that name SIMD extensions (x86: sse*, avx*, fma, f16c, amx*; Arm: asimd*, sve*)
VECTOR_FLAG = re.compile(r"^(sse\d?|ssse3|sse4_\d|sse4a|avx\w*|fma\d?|f16c|amx\w*|asimd\w*|sve\w*|neon)$")


@lru_cache(maxsize=1)
def cpu_vector_flags() -> str:
    """The CPU's vector extensions, sorted and space-separated ('' when /proc/cpuinfo is unreadable)."""
    try:
        with open("/proc/cpuinfo") as handle:
            line = next((l for l in handle if l.startswith(("flags", "Features"))), "")
    except OSError:
        return ""
    flags = line.split(":", 1)[1].split() if ":" in line else []
    return " ".join(sorted({f for f in flags if VECTOR_FLAG.match(f)}))


@lru_cache(maxsize=1)
def torch_cpu_capability() -> str:
    """The instruction set torch's CPU kernels dispatch to (e.g. 'AVX2', 'AVX512'; '' if unknown)."""
    try:
        import torch

        return str(torch.backends.cpu.get_cpu_capability())
    except (AttributeError, RuntimeError):
        return ""


@lru_cache(maxsize=1)
def torch_blas() -> str:
    """torch's BLAS backend and its version, with oneDNN's, from ``torch.__config__.show()``."""
    try:
        import torch

        text = torch.__config__.show()
    except (AttributeError, RuntimeError):
        return ""
    blas = re.search(r"BLAS_INFO=(\w+)", text)
    mkl = re.search(r"Math Kernel Library Version ([\w.]+)", text)
    dnn = re.search(r"MKL-DNN v([\w.]+)", text)
    parts = [blas.group(1) if blas else "unknown"]
    if mkl and parts[0] == "mkl":
        parts[0] += f" {mkl.group(1)}"
    if dnn:
        parts.append(f"oneDNN {dnn.group(1)}")
    return ", ".join(parts)


@lru_cache(maxsize=1)
def numpy_blas() -> str:
    """numpy's BLAS library and version, plus the kernel family OpenBLAS chose at run time when known."""
    try:
        import numpy as np

        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        text = f"{blas.get('name', 'unknown')} {blas.get('version', '')}".strip()
    except (KeyError, TypeError, AttributeError, ValueError):
        return ""
    try:  # optional: the run-time kernel choice of a DYNAMIC_ARCH OpenBLAS (e.g. 'Haswell', 'SkylakeX')
        from threadpoolctl import threadpool_info

        arch = next((i.get("architecture") for i in threadpool_info() if i.get("user_api") == "blas"), None)
    except Exception:  # noqa: BLE001 — a probe must never fail a run
        arch = None
    return f"{text} ({arch} kernels)" if arch else text
