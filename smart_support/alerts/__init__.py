"""Urgent-ticket alerts: a durable outbox written before the answer goes out, and a dispatcher
that delivers it off the request path (retries, backoff with jitter, dead letters)."""
