"""The lazily loaded stage packages (PEP 562): their public names resolve to the same objects as the
submodules define, and ``glacierwatch.model.train`` / ``.evaluate`` stay the functions even when the
submodules of the same names are imported first (the import system binds a submodule on its package)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

_PROBE = """
import importlib, inspect, json, sys
first = sys.argv[1]
if first:
    importlib.import_module(first)
from glacierwatch.model import train, evaluate
import glacierwatch.model as model
print(json.dumps({"train": inspect.isfunction(train) and train.__module__,
                  "evaluate": inspect.isfunction(evaluate) and evaluate.__module__,
                  "attr_train": inspect.isfunction(model.train), "attr_evaluate": inspect.isfunction(model.evaluate),
                  "submodule": inspect.ismodule(sys.modules["glacierwatch.model.train"])}))
"""


@pytest.mark.parametrize("first", ["", "glacierwatch.model.train", "glacierwatch.model.evaluate",
                                   "glacierwatch.model.cli"])
def test_model_train_and_evaluate_are_the_functions(first: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", _PROBE, first], capture_output=True, text=True, env=env, cwd=REPO,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen == {"train": "glacierwatch.model.train", "evaluate": "glacierwatch.model.evaluate",
                    "attr_train": True, "attr_evaluate": True, "submodule": True}


@pytest.mark.parametrize("package", ["glacierwatch.model", "glacierwatch.chips"])
def test_every_public_name_resolves(package: str) -> None:
    import importlib

    module = importlib.import_module(package)
    defined_here = {n for n, v in vars(module).items()
                    if not n.startswith("_") and callable(v) and getattr(v, "__module__", "") == package}
    assert set(module.__all__) == set(module._EXPORTS) | defined_here  # the one table and __all__ agree
    for name in module.__all__:
        value = getattr(module, name)
        assert value is not None, f"{package}.{name}"
        assert name in dir(module)
    with pytest.raises(AttributeError):
        module.no_such_name  # noqa: B018
