"""Model module diffusion (being written)."""
