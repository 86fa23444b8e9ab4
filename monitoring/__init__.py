"""The watch: logs, metrics, request logs, anomaly rules, alerts and response.

Shared by the API, the workers and Beat, so it never imports the web app.
"""
