"""Model module vae (being written)."""
