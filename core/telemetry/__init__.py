"""What the hub tells its operators: Prometheus metrics, Sentry alerts, and logs scrubbed of
payloads and personal data.
"""
