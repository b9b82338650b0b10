"""Model module pix2pix (being written)."""
