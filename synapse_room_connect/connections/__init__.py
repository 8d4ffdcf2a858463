"""Connections: room state read as consents, the status of a pair, and the
actions and reconciliation that change them."""
