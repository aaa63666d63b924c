"""Sandboxes that run untrusted candidates: the worker (runs inside) and the backends."""
