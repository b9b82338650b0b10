"""Model module cgan (being written)."""
