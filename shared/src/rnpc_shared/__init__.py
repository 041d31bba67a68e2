"""Shared contracts and runtime for the rNPC advisor services (no clinical logic)."""
