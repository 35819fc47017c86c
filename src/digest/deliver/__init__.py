"""Delivery: backends that carry one rendered edition to many recipients (outbox, smtp, sendgrid)."""

# The names alone, here where importing costs nothing: `digest --help` offers them without loading config.
BACKENDS = ("outbox", "smtp", "sendgrid")  # deliver/registry.py maps each to its class
