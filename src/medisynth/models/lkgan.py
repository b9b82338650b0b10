"""Model module lkgan (being written)."""
