"""A small application service registered with a harness homeserver.

It stands in for a bridge: its bot (``sender_localpart``) creates portal rooms
and its users live in an exclusive namespace. It has no URL, so Synapse never
pushes transactions to it; tests drive it through the client-server API with
its ``as_token``, as a bridge does.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from pathlib import Path

import attrs

from harness.client import JsonDict, MatrixClient, QueryValue
from harness.config import write_config
from harness.synapse import Homeserver

CONFIG_KEY = "app_service_config_files"


@attrs.frozen
class AppService:
    """The registration of one application service, as Synapse reads it."""

    id: str = "portal-bridge"
    sender_localpart: str = "portalbot"
    user_regex: str = "@irc_.*"
    as_token: str = attrs.field(factory=lambda: secrets.token_hex(16))
    hs_token: str = attrs.field(factory=lambda: secrets.token_hex(16))

    def registration(self) -> JsonDict:
        return {
            "id": self.id,
            "url": None,
            "as_token": self.as_token,
            "hs_token": self.hs_token,
            "sender_localpart": self.sender_localpart,
            "namespaces": {
                "users": [{"exclusive": True, "regex": self.user_regex}],
                "aliases": [],
                "rooms": [],
            },
            "rate_limited": False,
        }

    def write(self, directory: Path) -> Path:
        path = directory / f"appservice-{self.id}.yaml"
        write_config(path, self.registration())
        return path


def register_appservice(hs: Homeserver, service: AppService) -> None:
    """Write the registration and add it to the config; takes effect on the next start."""
    path = service.write(hs.directory)
    files = [*hs.config_overrides.get(CONFIG_KEY, []), str(path)]
    hs.reconfigure(config_overrides={**hs.config_overrides, CONFIG_KEY: files})


class AppServiceClient(MatrixClient):
    """A client authenticated with an ``as_token``, acting as the service's bot
    or, with ``masquerade``, as one of its namespace's users (``?user_id=``)."""

    def __init__(self, base_url: str, as_token: str, user_id: str, *, masquerade: bool) -> None:
        super().__init__(base_url, as_token, user_id)
        self._masquerade = masquerade

    def request(
        self,
        method: str,
        path: str,
        body: object = None,
        query: Mapping[str, QueryValue | None] | None = None,
        *,
        timeout: float | None = None,
        authenticated: bool = True,
    ) -> JsonDict:
        if self._masquerade and authenticated:
            query = {**(query or {}), "user_id": self.user_id}
        return super().request(
            method, path, body, query, timeout=timeout, authenticated=authenticated
        )


def appservice_client(
    hs: Homeserver, service: AppService, user_id: str | None = None
) -> AppServiceClient:
    """The service's bot, or ``user_id`` (its bot or a namespace user) by masquerading."""
    if user_id is None:
        return AppServiceClient(
            hs.client_url, service.as_token, hs.user_id(service.sender_localpart), masquerade=False
        )
    return AppServiceClient(hs.client_url, service.as_token, user_id, masquerade=True)
