"""Webhooks: endpoints per API key, and the deliveries made to them."""
