"""Scripts that drive a running service: load, attacks on ourselves."""
