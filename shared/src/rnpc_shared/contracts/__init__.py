"""Public contracts: the recurrence record, score/evidence/recommendation shapes, event payloads.

Names here are stable (reference/contracts/README.md): extend with optional fields, never rename.
"""
