"""rNPC advisor: evidence service."""
