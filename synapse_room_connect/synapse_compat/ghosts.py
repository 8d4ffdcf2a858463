"""Ghost accounts: registering them quietly, their avatar, and their push rules.

``ModuleApi.register_user`` is the public way to register, but it runs the
client registration rules: Synapse refuses a localpart starting with ``_``
(kept for application services, and the ghost prefix's default), the MAU
limit would stop a ghost when the server is full, and the new user is
joined to the server's auto-join rooms and put in the user directory. A
ghost is none of that, so it is registered the way Synapse registers an
application service's users: straight into the store, as a bot user
(``user_type`` "bot": exempt from consent and from the count of real users).
"""

from __future__ import annotations

import logging
from typing import Any

from synapse.module_api import ModuleApi
from synapse.types import UserID, create_requester

logger = logging.getLogger(__name__)

# Synapse's UserTypes.BOT.
_BOT_USER_TYPE = "bot"


async def register_ghost(api: ModuleApi, user_id: str, displayname: str) -> None:
    """Register a local user with no password (nobody can log in as it) and
    the display name. Works on any process: the registration store writes
    from workers too. Checked against 1.150.0 and 1.163.2."""
    handler: Any = api._hs.get_registration_handler()
    await handler.register_with_store(
        user_id=user_id,
        create_profile_with_displayname=displayname,
        user_type=_BOT_USER_TYPE,
        approved=True,
    )


async def set_avatar(api: ModuleApi, user_id: str, avatar_url: str, *, propagate: bool) -> None:
    """Set a local user's avatar (the module API sets only display names);
    with ``propagate``, its member events in its rooms follow, as for a
    client's change. Checked against 1.163.2; the keyword arguments are
    those of 1.150.0's handler too."""
    user = UserID.from_string(user_id)
    handler: Any = api._hs.get_profile_handler()
    await handler.set_avatar_url(
        target_user=user,
        requester=create_requester(user),
        new_avatar_url=avatar_url,
        by_admin=True,
        propagate=propagate,
    )


async def set_displayname(api: ModuleApi, user_id: str, name: str, *, propagate: bool) -> None:
    """``ModuleApi.set_displayname``, with a choice whether member events
    follow (not before the ghost is in any room). Checked against 1.163.2;
    the keyword arguments are those of 1.150.0's handler too."""
    user = UserID.from_string(user_id)
    handler: Any = api._hs.get_profile_handler()
    await handler.set_displayname(
        target_user=user,
        requester=create_requester(user),
        new_displayname=name,
        by_admin=True,
        propagate=propagate,
    )


async def mute_pushes(api: ModuleApi, user_id: str) -> bool:
    """Turn on the user's ``.m.rule.master`` override, so Synapse computes no
    notification for it in any room. Only the process that writes push rules
    (the main process) can; whether it did. Checked against 1.150.0 and 1.163.2."""
    try:
        from synapse.handlers.push_rules import RuleSpec

        handler: Any = api._hs.get_push_rules_handler()
        spec = RuleSpec(
            scope="global", template="override", rule_id=".m.rule.master", attr="enabled"
        )
        await handler.set_rule_attr(user_id, spec, True)
    except Exception as e:
        logger.info("Could not turn off push rules for %s here: %s", user_id, e)
        return False
    return True


def registration_verdict(allowed: bool) -> Any:
    """What a ``check_registration_for_spam`` callback returns; the enum is
    not in the module API. Checked against 1.150.0 and 1.163.2."""
    from synapse.spam_checker_api import RegistrationBehaviour

    return RegistrationBehaviour.ALLOW if allowed else RegistrationBehaviour.DENY
