"""Tools the investigation may call (read-only) and the actions a human may approve."""
