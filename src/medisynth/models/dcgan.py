"""Model module dcgan (being written)."""
