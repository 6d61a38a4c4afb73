"""The HTTP ingress process: authenticate, dedupe, durably enqueue, answer."""
