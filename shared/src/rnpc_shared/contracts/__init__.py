"""Public contracts: the recurrence record, score/evidence/recommendation shapes, event payloads.

Names here are stable (../shared/contracts/README.md): extend with optional fields, never rename.
"""
