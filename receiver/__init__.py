"""tashooks receiver: verifies, deduplicates, stores and queues webhook deliveries.

This package never imports ``handlers``; what both sides share (settings, the event model
and its job payload, Redis key names) lives in its small leaf modules.
"""
