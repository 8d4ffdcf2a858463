"""Pointers filled in with their originals for the users allowed to see them."""
