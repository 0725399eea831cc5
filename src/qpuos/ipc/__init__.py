"""Inter-process communication: shared-memory rings between host and controller."""
