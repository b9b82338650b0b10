"""Model module edsr (being written)."""
