"""Transforms: bronze -> silver (validate, deduplicate, fill gaps) -> gold."""
