"""rNPC advisor: recommendation service."""
