package msc2923_test

import (
	"strings"
	"testing"

	"github.com/matrix-org/complement/client"
	"github.com/matrix-org/complement/match"
	"github.com/matrix-org/complement/must"
	"github.com/tidwall/gjson"

	"synapse-room-connect/complement/deployer"
)

// Expansion for clients (docs/msc2923.md §9): a pointer the ferry sent is
// served with the live original in unsigned; a pointer-shaped event from
// anyone else never is. The subtests share the homeserver, each with rooms
// of its own.
func TestMSC2923Expansion(t *testing.T) {
	d := deployer.Deploy(t, 1)
	defer d.Destroy(t)

	t.Run("a member of B sees the live original in /sync", func(t *testing.T) {
		p := connectedPair(t, d, "hs1")
		sent := sendMessage(t, p.alice, p.roomA, "first version", nil)
		pointer := waitForPointer(t, p.bob, p.roomB, sent)
		must.MatchGJSON(t, pointer,
			match.JSONKeyEqual(originalPath+".type", "m.room.message"),
			match.JSONKeyEqual(originalPath+".sender", p.alice.UserID),
			match.JSONKeyEqual(originalPath+".event_id", sent),
			match.JSONKeyEqual(originalPath+".room_id", p.roomA),
			match.JSONKeyEqual(originalPath+".content", map[string]any{"msgtype": "m.text", "body": "first version"}),
			match.JSONKeyEqual(originalPath+".origin_server_ts", event(t, p.alice, p.roomA, sent).Get("origin_server_ts").Int()),
			match.JSONKeyMissing(originalPath+".edited"),
		)

		pointerID := pointer.Get("event_id").Str
		edit := sendEdit(t, p.alice, p.roomA, sent, "second version")
		live := freshEvent(t, p.bob, p.roomB, pointerID, func(ev gjson.Result) bool {
			return ev.Get(originalPath+".content.body").Str == "second version"
		})
		must.MatchGJSON(t, live,
			match.JSONKeyEqual(originalPath+".event_id", sent),
			match.JSONKeyEqual(originalPath+".content.msgtype", "m.text"),
			match.JSONKeyEqual(originalPath+".edited.event_id", edit),
			// The pointer itself is what the bot sent.
			match.JSONKeyEqual("content.body", "Alice: first version"),
		)
	})

	t.Run("a forged pointer is not expanded", func(t *testing.T) {
		p := connectedPair(t, d, "hs1")
		victim := user(t, d, "hs1", "victim")
		private := createRoom(t, victim, "victim", nil)
		const secret = "top secret"
		secretID := sendMessage(t, victim, private, secret, nil)

		carol := user(t, d, "hs1", "carol")
		p.bob.MustInviteRoom(t, p.roomB, carol.UserID)
		carol.MustJoinRoom(t, p.roomB, nil)

		// Bob, a user of B, names the private event himself.
		forgedPrivate := sendMessage(t, p.bob, p.roomB, "look", map[string]any{pointerKey: map[string]any{
			"room_id": private, "event_id": secretID, "sender": victim.UserID, "origin_server_ts": 0,
		}})
		// Right room, real event, but sent by Bob rather than the ferry.
		real := sendMessage(t, p.alice, p.roomA, "shared", nil)
		waitForPointer(t, p.bob, p.roomB, real)
		forgedSender := sendMessage(t, p.bob, p.roomB, "impostor", map[string]any{pointerKey: map[string]any{
			"room_id": p.roomA, "event_id": real, "sender": p.alice.UserID, "origin_server_ts": 0,
		}})

		for _, reader := range []*client.CSAPI{p.bob, carol} {
			for _, forged := range []string{forgedPrivate, forgedSender} {
				mustBeUnexpanded(t, waitForEvent(t, reader, p.roomB, hasEventID(forged)))
			}
			synced, _ := reader.MustSync(t, client.SyncReq{Filter: timelineFilter})
			if strings.Contains(synced.Raw, secret) {
				t.Errorf("%s's /sync contains the private text: %s", reader.UserID, synced.Raw)
			}
			for _, ev := range timeline(t, reader, p.roomB) {
				if strings.Contains(ev.Raw, secret) {
					t.Errorf("%s's /messages of B contains the private text: %s", reader.UserID, ev.Raw)
				}
			}
		}
	})
}

// mustBeUnexpanded checks that a pointer-shaped event carries no original:
// its unsigned field is absent or a placeholder without content.
func mustBeUnexpanded(t *testing.T, ev gjson.Result) {
	t.Helper()
	original := ev.Get(originalPath)
	if !original.Exists() {
		return
	}
	must.MatchGJSON(t, original,
		match.JSONKeyEqual("placeholder", true),
		match.JSONKeyMissing("content"),
		match.JSONKeyMissing("sender"),
	)
}
