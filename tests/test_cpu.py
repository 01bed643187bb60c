"""``cpu_instructions``: the AVX2 cap reaches PyTorch when set before it loads, and is checked after."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest

from glacierwatch.config import Config
from glacierwatch.cpu import AVX2_ENVIRONMENT, cap_cpu_instructions, cpu_capability, is_x86
from glacierwatch.errors import ConfigError

x86_only = pytest.mark.skipif(not is_x86(), reason="the AVX2 cap is for x86-64 CPUs")

_CHILD = """
import sys
from glacierwatch.cpu import cap_cpu_instructions, cpu_capability
cap_cpu_instructions(sys.argv[1])
import torch
torch.manual_seed(0)
x = torch.randn(4, 6, 32, 32)
y = torch.nn.Conv2d(6, 8, 3)(x).sum().item()
print(cpu_capability(), repr(y))
"""


def _child(level: str) -> tuple[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in AVX2_ENVIRONMENT}
    out = subprocess.run([sys.executable, "-c", _CHILD, level], env=env, capture_output=True, text=True, check=True)
    capability, value = out.stdout.split()
    return capability, value


@x86_only
def test_avx2_cap_set_before_torch_loads_reaches_its_kernels() -> None:
    capped, capped_value = _child("avx2")
    assert capped in {"AVX2", "DEFAULT"}
    native, _ = _child("native")
    if native in {"AVX2", "DEFAULT"}:
        pytest.skip(f"this CPU's own kernels are {native}: nothing beyond AVX2 to cap")
    assert native != capped


def test_cpu_instructions_is_checked_on_load() -> None:
    assert Config.from_dict({"cpu_instructions": "avx2"}).cpu_instructions == "avx2"
    assert Config().cpu_instructions == "native"
    with pytest.raises(ConfigError, match="cpu_instructions"):
        Config.from_dict({"cpu_instructions": "avx512"})
    with pytest.raises(ConfigError, match="cpu_instructions"):
        cap_cpu_instructions("sse")  # type: ignore[arg-type]


@x86_only
def test_cap_after_torch_loaded_warns_when_its_kernels_are_wider(caplog: pytest.LogCaptureFixture,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import torch  # noqa: F401  (loaded, as in a notebook that imported it first)

    for key in AVX2_ENVIRONMENT:
        monkeypatch.delenv(key, raising=False)
    with caplog.at_level(logging.WARNING, logger="glacierwatch.cpu"):
        cap_cpu_instructions("avx2")
    wider = cpu_capability() not in {"AVX2", "DEFAULT"}
    assert any("came after PyTorch was loaded" in r.getMessage() for r in caplog.records) == wider
    assert all(os.environ.get(k) is None for k in AVX2_ENVIRONMENT)  # too late to set: left alone
