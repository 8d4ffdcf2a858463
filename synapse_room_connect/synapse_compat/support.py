"""Start-up check: a Synapse release that lacks an internal this package
reaches for stops the homeserver at start-up, naming itself, instead of
failing at the first message; one newer than any tested starts with a
warning."""

from __future__ import annotations

import logging
import re
from typing import Final

import synapse
from synapse.module_api import ModuleApi

logger = logging.getLogger(__name__)

# The newest Synapse release series CI has run the integration tests against,
# and the one place it is written down: pyproject.toml sets no upper bound, so
# installing this package never moves Synapse to an older release.
NEWEST_TESTED: Final = (1, 163)
NEWEST_TESTED_LABEL: Final = f"{NEWEST_TESTED[0]}.{NEWEST_TESTED[1]}.x"
SUPPORTED: Final = f"1.150.0 to {NEWEST_TESTED_LABEL}"

# The release at the start of synapse.__version__, which run from a git
# checkout appends the branch and commit.
_RELEASE = re.compile(r"(\d+)\.(\d+)")


class UnsupportedSynapseError(RuntimeError):
    """This Synapse lacks an internal the module relies on."""


def unsupported(lacking: str) -> UnsupportedSynapseError:
    """The error naming this Synapse's version and what it lacks."""
    return UnsupportedSynapseError(
        f"synapse_room_connect cannot run on Synapse {synapse.__version__}: it lacks "
        f"{lacking}. Supported releases: {SUPPORTED}."
    )


# What the package's functions reach for, checked once at start-up: a release that
# moved one fails there, naming itself, instead of at the first message.
_STORE_INTERNALS: tuple[str, ...] = (
    "get_events",
    "get_event",
    "is_host_joined",
    "get_rooms_for_user",
    "get_invited_rooms_for_local_user",
    "is_partial_state_room",
    "get_prev_events_for_room",
    "get_room_max_stream_ordering",
    "has_user_annotated_event",
    "get_applicable_edit",
    "get_applicable_edits",
    "check_local_user_in_room",
    "_events_stream_cache",
    "_curr_state_delta_stream_cache",
    "_get_event_cache",
    "get_app_services",
)


def newer_than_tested(version: str) -> bool:
    """Whether ``version`` is a release series after ``NEWEST_TESTED``;
    its release candidates count as newer. False if it names no release."""
    found = _RELEASE.match(version)
    if found is None:
        return False
    return (int(found[1]), int(found[2])) > NEWEST_TESTED


def warn_if_newer_than_tested(version: str) -> None:
    """Log a warning naming ``version`` if it is newer than any release the
    package was tested with: the start-up check passed, but an internal may
    still behave differently."""
    if newer_than_tested(version):
        logger.warning(
            "synapse_room_connect runs on Synapse %s, newer than the newest release it "
            "was tested with (%s). Its start-up check found every Synapse internal it "
            "uses, but one may behave differently: look for a newer synapse-room-connect "
            "and watch the ferry's metrics and logs.",
            version,
            NEWEST_TESTED_LABEL,
        )


def require_supported_synapse(api: ModuleApi) -> None:
    """Fail start-up, naming the Synapse version, if an internal this module
    uses is missing; warn if the release is newer than any tested. Checked
    against 1.150.0 and 1.163.2 (both pass, neither warns)."""
    # Imported here, not at the top: this module must load on any release so
    # that a missing internal is reported, not an ImportError.
    from synapse.events.snapshot import UnpersistedEventContext
    from synapse.notifier import Notifier

    missing = [f"store.{name}" for name in _STORE_INTERNALS if not hasattr(api._store, name)]
    if not hasattr(UnpersistedEventContext, "batch_persist_unpersisted_contexts"):
        missing.append("UnpersistedEventContext.batch_persist_unpersisted_contexts")
    # The class, not hs.get_notifier(): building the notifier this early would
    # change the order in which Synapse starts its parts.
    if not hasattr(Notifier, "add_replication_callback"):
        missing.append("Notifier.add_replication_callback")
    if missing:
        raise unsupported(", ".join(missing))
    warn_if_newer_than_tested(synapse.__version__)
