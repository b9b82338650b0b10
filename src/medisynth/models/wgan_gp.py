"""Model module wgan_gp (being written)."""
