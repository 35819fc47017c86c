"""Delivery: backends that carry one rendered edition to many recipients (outbox, smtp, sendgrid)."""
