"""Logging the fan-out client in, and keeping its session between runs.

A password login creates a device, and that device's Olm account lives in
nio's store: reusing the saved session keeps the device and its keys, so
other users' clients do not see a new, unknown device on every run.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Final

import nio

from synapse_room_connect.fanout.errors import FanoutError, error_text

logger = logging.getLogger(__name__)

CREDENTIALS_FILE: Final = "credentials.json"


class CredentialStore:
    """Saved sessions (user, device, access token) per homeserver and user, in one file.

    The file holds access tokens, so it is created readable by its owner only.
    """

    def __init__(self, store_dir: Path) -> None:
        self.path = store_dir / CREDENTIALS_FILE

    def load(self) -> dict[str, dict[str, str]]:
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return raw if isinstance(raw, dict) else {}

    def get(self, homeserver: str, user_id: str) -> dict[str, str] | None:
        return self.load().get(f"{homeserver} {user_id}")

    def save(self, homeserver: str, user_id: str, device_id: str, access_token: str) -> None:
        saved = self.load()
        saved[f"{homeserver} {user_id}"] = {
            "user_id": user_id,
            "device_id": device_id,
            "access_token": access_token,
        }
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(saved, handle)


async def restore(client: Any, access_token: str, *, expected_user: str) -> None:
    """Make the nio ``client`` use ``access_token``, after checking whose it is."""
    client.access_token = access_token
    response = await client.whoami()
    if not isinstance(response, nio.WhoamiResponse):
        raise FanoutError(f"access token rejected: {error_text(response)}")
    if expected_user and response.user_id != expected_user:
        raise FanoutError(f"the access token belongs to {response.user_id}")
    if not response.device_id:
        raise FanoutError("the access token has no device; encryption needs one")
    client.restore_login(response.user_id, response.device_id, access_token)


async def log_in(
    client: Any,
    credentials: CredentialStore,
    homeserver: str,
    user_id: str,
    *,
    device_name: str,
    password: str | None,
    access_token: str | None,
) -> None:
    """Log the nio ``client`` in as ``user_id``; see ``FanoutClient.login``."""
    if access_token is not None:
        await restore(client, access_token, expected_user=user_id)
    else:
        saved = credentials.get(homeserver, user_id)
        restored = False
        if saved is not None:
            try:
                await restore(client, saved["access_token"], expected_user=user_id)
                restored = str(client.device_id) == saved.get("device_id")
            except FanoutError as exc:
                logger.info("Saved session for %s unusable (%s); logging in", user_id, exc)
        if not restored:
            if password is None:
                raise FanoutError("a password or an access token is needed")
            client.access_token = ""
            response = await client.login(password, device_name=device_name)
            if not isinstance(response, nio.LoginResponse):
                raise FanoutError(f"login failed: {error_text(response)}")
            credentials.save(
                homeserver,
                str(client.user_id or user_id),
                str(client.device_id),
                str(client.access_token),
            )
    if client.should_upload_keys:
        response = await client.keys_upload()
        if not isinstance(response, nio.KeysUploadResponse):
            raise FanoutError(f"uploading device keys failed: {error_text(response)}")
