"""Small assertions shared by the tests."""

from __future__ import annotations

from typing import TypeVar

T = TypeVar("T")


def nonempty(collection: T) -> T:
    """``collection`` itself, after asserting that it has at least one item: a loop of assertions over
    a fixture's collection must not pass by looping over nothing."""
    size = len(collection)  # type: ignore[arg-type]
    assert size > 0, f"expected a non-empty collection, got an empty {type(collection).__name__}"
    return collection

