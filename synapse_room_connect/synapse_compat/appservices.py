"""Application services registered with this homeserver: which one a user
belongs to. The module API has no such lookup."""

from __future__ import annotations

from typing import Any

from synapse.module_api import ModuleApi


def appservice_of(api: ModuleApi, user_id: str) -> str | None:
    """The ID (as in its registration file) of the application service whose
    bot is ``user_id`` or whose user namespace holds it; None for other users.

    Reads the registrations Synapse loaded at start-up, no database.
    Checked against 1.150.0 and 1.163.2.
    """
    store: Any = api._store
    for service in store.get_app_services():
        if service.is_interested_in_user(user_id):
            return str(service.id)
    return None
