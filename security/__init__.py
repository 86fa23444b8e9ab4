"""Security controls: keys, roles, bans, input validation, transport headers."""
