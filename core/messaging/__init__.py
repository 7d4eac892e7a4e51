"""Dramatiq wiring: the broker for a configuration (``broker``), and the middleware that owns what
becomes of a processed message: retry with backoff or give up (``retries``), dead letters
(``dead_letters``), and recovery of what the broker lost (``middleware``).
"""
