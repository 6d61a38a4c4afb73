"""Callhook: the webhook target for calling platforms."""

__version__ = "0.1.0"
