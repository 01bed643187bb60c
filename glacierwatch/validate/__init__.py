"""Validation: compare an areas table with dated reference areas (GLIMS validation outlines, Swiss
Glacier Inventories, WGMS Fluctuations of Glaciers). See docs/validation.md."""

from glacierwatch.validate.core import (
    SUMMARY_COLUMNS,
    VALIDATION_COLUMNS,
    ValidationResult,
    compare,
    glims_id_location,
    read_our_areas,
    write_validation,
)
from glacierwatch.validate.references import REFERENCE_COLUMNS, ReferenceSet, name_key, read_reference

__all__ = [
    "REFERENCE_COLUMNS", "SUMMARY_COLUMNS", "VALIDATION_COLUMNS", "ReferenceSet", "ValidationResult",
    "compare", "glims_id_location", "name_key", "read_our_areas", "read_reference", "write_validation",
]
