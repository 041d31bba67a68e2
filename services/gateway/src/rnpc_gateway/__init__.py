"""rNPC advisor: gateway service."""
