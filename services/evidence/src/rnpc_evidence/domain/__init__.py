"""Pure evidence logic: the curated catalogue, pooling and matching (no I/O beyond the packaged data)."""
