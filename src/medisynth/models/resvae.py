"""Model module resvae (being written)."""
