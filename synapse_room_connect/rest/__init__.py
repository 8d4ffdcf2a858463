"""The module's HTTP endpoints, for room admins and for homeserver admins."""
