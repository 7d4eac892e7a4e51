"""Read models shared by the CLI and the HTTP API: a transaction's timeline, a journey run's view."""
