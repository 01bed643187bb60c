"""The CPU instruction set PyTorch's kernels may use: ``native`` (the fastest the CPU has) or ``avx2``.

fp32 training on a CPU is deterministic on one machine, but the kernels that oneDNN, MKL and PyTorch
itself pick differ between instruction sets: an AVX-512 CPU sums in another order than an AVX2 one, so
the same seeded training ends in weights that differ in the last bits, and after four epochs of
gradient descent in a different model (the demo's largest trend error was 0.307 %/yr on an AVX-512
CPU and 0.270 on an AVX2 one). Capping the three libraries at AVX2, which most x86-64 CPUs made since
2013 have, makes the arithmetic the same on all of them: with ``avx2`` the demo's table on an AVX-512
CPU equals the AVX2 machine's to the last printed digit (docs/model.md, "Determinism").

The libraries read their caps from the environment when they first run a kernel, so :func:`cap_cpu_instructions`
must run before PyTorch is imported in the process (``glacierwatch run`` and ``glacierwatch demo`` call it
first); later it can only check. On other architectures (ARM) the cap does nothing: their kernels are
their own. A convolution, its gradient and a matrix product gave the same bits with 1, 2 and 4 threads;
whole trainings were compared across instruction sets, not across thread counts.
"""

from __future__ import annotations

import logging
import os
import platform
import sys
from typing import get_args

from glacierwatch.config import CpuInstructions
from glacierwatch.errors import ConfigError

log = logging.getLogger(__name__)

#: The environment variables that cap oneDNN, PyTorch's own vectorised kernels and MKL at AVX2.
AVX2_ENVIRONMENT: dict[str, str] = {
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "ATEN_CPU_CAPABILITY": "avx2",
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",
}

_X86 = {"x86_64", "amd64", "i686", "i386"}
#: PyTorch's names (``torch.backends.cpu.get_cpu_capability``) of the kernel sets no wider than AVX2.
_AT_MOST_AVX2 = {"DEFAULT", "AVX2"}


def is_x86() -> bool:
    return platform.machine().lower() in _X86


def cap_cpu_instructions(level: CpuInstructions) -> None:
    """Cap the CPU kernels at ``level`` for the rest of this process (``native``: no cap).

    Once PyTorch is loaded its kernels are chosen: if that happened without the cap on a CPU beyond
    AVX2, a warning says so and the run goes on with the native kernels (the model card's
    ``software.cpu_capability`` records which were used)."""
    if level not in get_args(CpuInstructions):
        raise ConfigError(f"cpu_instructions must be one of {', '.join(get_args(CpuInstructions))}, not {level!r}")
    if level == "native":
        return
    if not is_x86():
        log.info("cpu_instructions = 'avx2' has no effect on a %s CPU", platform.machine())
        return
    missing = {k: v for k, v in AVX2_ENVIRONMENT.items() if os.environ.get(k) != v}
    if not missing:
        return
    if "torch" not in sys.modules:
        os.environ.update(missing)
        log.info("CPU kernels capped at AVX2 (cpu_instructions = 'avx2')")
        return
    used = cpu_capability()
    if used not in _AT_MOST_AVX2:
        settings = " ".join(f"{k}={v}" for k, v in AVX2_ENVIRONMENT.items())
        log.warning("cpu_instructions = 'avx2' came after PyTorch was loaded: this run uses its %s kernels, so its "
                    "model may differ in the last bits from an AVX2 machine's (set %s before starting Python)",
                    used, settings)


def cpu_capability() -> str:
    """The instruction set PyTorch's CPU kernels use in this process (``AVX512``, ``AVX2``, ``DEFAULT``...)."""
    import torch

    return str(torch.backends.cpu.get_cpu_capability())
