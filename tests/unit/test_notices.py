"""The bot's texts: what each says, how it is shown, and that both modules stay pure."""

import ast
from pathlib import Path
from types import ModuleType

import pytest

import synapse_room_connect.bot.notices as notices
from synapse_room_connect.bot import notice_format
from synapse_room_connect.bot.notice_format import rendered
from synapse_room_connect.constants import ACK_ENCRYPTION, ACK_VISIBILITY
from synapse_room_connect.core.handshake import Mode


@pytest.mark.parametrize("module", [notices, notice_format])
def test_imports_nothing_from_synapse(module: ModuleType) -> None:
    tree = ast.parse(Path(str(module.__file__)).read_text())
    imported = [
        node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
    ] + [
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    ]
    assert imported
    assert not [m for m in imported if m == "synapse" or m.startswith("synapse.")]


def test_connected_names_the_mode() -> None:
    assert notices.connected("#b:hs", Mode.FERRY) == (
        "This room is now connected to #b:hs; messages are shared both ways."
    )
    assert "clients send to both themselves" in notices.connected("#b:hs", Mode.CLIENT_FANOUT)


def test_requested_lists_blockers_only_when_blocked() -> None:
    plain = notices.requested("#b:hs", "!a:hs", "@bot:hs", ())
    assert "`!connect approve !a:hs`" in plain
    assert "@bot:hs must be able to join" in plain
    assert "Blocked" not in plain
    blocked = notices.requested("#b:hs", "!a:hs", "@bot:hs", (ACK_ENCRYPTION,))
    assert blocked.endswith(
        "Blocked until both rooms acknowledge: "
        "one room is end-to-end encrypted and the other is not."
    )


def test_paused_and_refusal_join_every_reason() -> None:
    both = (ACK_ENCRYPTION, ACK_VISIBILITY)
    paused = notices.paused("#b:hs", both)
    assert paused.startswith("The connection to #b:hs is paused: one room is end-to-end")
    assert "; one room is public or world-readable" in paused
    refusal = notices.mismatch_refused(list(both))
    assert '["encryption_mismatch", "visibility_mismatch"]' in refusal


def test_incoming_ended_and_mode_switch() -> None:
    assert notices.incoming("#a:hs", "!a:hs", 50) == (
        "#a:hs asks to connect to this room. An admin here (power level 50) can approve "
        "with `!connect approve !a:hs`."
    )
    assert notices.ended("#b:hs") == (
        "The connection to #b:hs has ended; messages are no longer shared."
    )
    assert "End-to-end encryption is now on" in notices.mode_switched("#b:hs", Mode.CLIENT_FANOUT)
    assert "unencrypted again" in notices.mode_switched("#b:hs", Mode.FERRY)


def test_command_replies() -> None:
    assert "power level 75" in notices.help_text(75)
    assert notices.connection_list([notices.connection_line("#b:hs", "active", "ferry")]) == (
        "Connections of this room:\n- #b:hs: active (ferry)"
    )
    assert notices.command_refused("revoke", "nope") == "Could not revoke: nope"
    assert notices.consent_blocked("#b:hs", (ACK_VISIBILITY,)).endswith(
        "acknowledge: visibility_mismatch."
    )
    help_for_remote = notices.remote_sender_help("hs", "!b:hs", {"room_id": "!b:hs"})
    assert 'content {"room_id": "!b:hs"}' in help_for_remote
    assert "users of hs" in help_for_remote


def test_a_homeserver_admins_part_names_them_their_server_and_the_acting_member() -> None:
    connecting = notices.admin_connecting("@root:hs", "hs", "@bridgebot:hs", "#b:hs")
    assert connecting == (
        "@root:hs, an admin of hs, asked on this room's behalf (as @bridgebot:hs) "
        "to connect it to #b:hs."
    )
    revoking = notices.admin_revoking("@root:hs", "hs", "@bridgebot:hs", "#b:hs")
    assert revoking == (
        "@root:hs, an admin of hs, is ending this room's connection to #b:hs "
        "on its behalf (as @bridgebot:hs)."
    )


def test_refusals_say_what_is_missing() -> None:
    assert notices.command_refused("revoke", notices.power_too_low(100, "@bob:hs", 50)) == (
        "Could not revoke: Changing this room's connections needs power level 100; @bob:hs has 50."
    )
    assert notices.not_joined("@bob:hs", "!a:hs") == "@bob:hs is not joined to !a:hs."
    assert notices.alias_unresolved("#x:hs", "Room alias not found") == (
        "Room alias #x:hs could not be resolved: Room alias not found"
    )
    assert "pass via, or use an alias" in notices.servers_needed("!b")
    assert notices.self_connection() == "A room cannot be connected to itself."
    assert notices.not_asked("#b:hs", "hs", visible=True) == (
        "#b:hs has not asked to connect to this room."
    )
    assert notices.not_asked("#b:other", "hs", visible=False) == (
        "#b:other has not asked to connect to this room "
        "(hs is not in that room and cannot see its state)."
    )
    assert notices.no_connection("This room", "#b:hs") == "This room has no connection to #b:hs."


def test_an_action_on_an_upgraded_room_points_to_its_successor() -> None:
    assert notices.room_was_upgraded("!old:hs", "!new:hs") == (
        "!old:hs was upgraded to !new:hs and has no live connections; its connections "
        "carry on in !new:hs: act on that room."
    )


def test_rendered_notice_shows_commands_as_code_and_reads_plain_without_marks() -> None:
    text = notices.incoming("#a:hs", "#a<b>:hs", 50)
    shown = rendered(text)
    assert shown.body == (
        "#a:hs asks to connect to this room. An admin here (power level 50) can approve "
        "with !connect approve #a<b>:hs."
    )
    assert "`" not in shown.body
    assert shown.html.endswith("can approve with <code>!connect approve #a&lt;b&gt;:hs</code>.")
    # A space after a command is an ordinary space, not indentation.
    after = rendered(notices.requested("#b:hs", "!a:hs", "@bot:hs", ()))
    assert "<code>!connect approve !a:hs</code> (@bot:hs must" in after.html


def test_rendered_help_keeps_its_lines_and_marks_every_command() -> None:
    shown = rendered(notices.help_text(50))
    assert "`" not in shown.body
    assert "\n  !connect list\n      show this room's connections" in shown.body
    assert shown.html.count("<code>!connect ") == 5
    assert "<br>&nbsp;&nbsp;<code>!connect list</code><br>" in shown.html
    assert "\n" not in shown.html


def test_a_stray_backtick_in_a_name_is_left_as_it_is() -> None:
    shown = rendered(notices.connected("`odd room", Mode.FERRY))
    assert shown.body == "This room is now connected to `odd room; messages are shared both ways."
    assert "<code>" not in shown.html
    assert shown.html.startswith("This room is now connected to `odd room;")
