"""rNPC advisor: scoring service."""
