"""The watch in the API: request hooks, alerts and responses, metrics."""
