"""Security controls: keys, roles, input validation."""
