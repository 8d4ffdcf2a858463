"""A Synapse release that moved a name the compatibility layer imports is
named when the module loads, instead of a bare ImportError."""

from __future__ import annotations

import subprocess
import sys

import synapse

# Run apart: the name is removed before the module is first imported.
_LOAD_WITHOUT_A_NAME = """
import synapse.rest.client.room as room
del room.SerializeMessagesDeps
import synapse_room_connect.synapse_compat
"""


def test_a_moved_name_fails_loading_naming_it_and_the_synapse_release() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _LOAD_WITHOUT_A_NAME], capture_output=True, text=True, check=False
    )
    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("synapse_room_connect.synapse_compat.support.Unsupported")
    assert f"Synapse {synapse.__version__}" in last_line
    assert "SerializeMessagesDeps" in last_line
