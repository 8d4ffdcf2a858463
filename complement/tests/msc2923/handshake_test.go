package msc2923_test

import (
	"net/http"
	"testing"

	"github.com/matrix-org/complement/client"
	"github.com/matrix-org/complement/helpers"
	"github.com/matrix-org/complement/match"
	"github.com/matrix-org/complement/must"

	"synapse-room-connect/complement/deployer"
)

// The two-sided handshake on one homeserver, through the REST API
// (docs/msc2923.md §2 and §7). The subtests share the homeserver, each with
// rooms of its own.
func TestMSC2923Handshake(t *testing.T) {
	d := deployer.Deploy(t, 1)
	defer d.Destroy(t)
	bot := ferryBot(t, d, "hs1")

	t.Run("a one-sided request is requested on one side and incoming on the other", func(t *testing.T) {
		alice, roomA := admin(t, d, "hs1", "alice", nil)
		bob, roomB := admin(t, d, "hs1", "bob", nil)
		pos := since(t, alice)

		must.MatchGJSON(t, requestConnection(t, alice, roomA, roomB),
			match.JSONKeyEqual("room_id", roomB),
			match.JSONKeyEqual("status", statusRequested),
			match.JSONKeyEqual("ferry", bot),
			match.JSONKeyEqual("mode", "ferry"),
		)
		waitForNotice(t, alice, pos, roomA, bot, "Requested a connection")
		mustHaveStatus(t, alice, roomA, roomB, statusRequested)
		mustHaveStatus(t, bob, roomB, roomA, statusIncoming)
	})

	t.Run("approval by the other room's admin makes it active on both sides", func(t *testing.T) {
		alice, roomA := admin(t, d, "hs1", "alice", nil)
		bob, roomB := admin(t, d, "hs1", "bob", nil)
		posA, posB := since(t, alice), since(t, bob)
		requestConnection(t, alice, roomA, roomB)

		must.MatchGJSON(t, requestConnection(t, bob, roomB, roomA),
			match.JSONKeyEqual("room_id", roomA),
			match.JSONKeyEqual("status", statusActive),
			match.JSONKeyEqual("ferry", bot),
		)
		waitForNotice(t, alice, posA, roomA, bot, "now connected")
		waitForNotice(t, bob, posB, roomB, bot, "now connected")
		mustHaveStatus(t, alice, roomA, roomB, statusActive)
		mustHaveStatus(t, bob, roomB, roomA, statusActive)
	})

	t.Run("a member without the power is refused with M_FORBIDDEN", func(t *testing.T) {
		alice, roomA := admin(t, d, "hs1", "alice", map[string]any{"preset": "public_chat"})
		_, roomB := admin(t, d, "hs1", "bob", nil)
		carol := d.Register(t, "hs1", helpers.RegistrationOpts{LocalpartSuffix: "carol"})
		carol.MustJoinRoom(t, roomA, nil)
		forbidden := match.HTTPResponse{
			StatusCode: http.StatusForbidden,
			JSON:       []match.JSON{match.JSONKeyEqual("errcode", "M_FORBIDDEN")},
		}

		res := carol.Do(t, "POST", api("rooms", roomA, "connections"),
			client.WithJSONBody(t, map[string]any{"room": roomB}))
		must.MatchResponse(t, res, forbidden)

		// The state event itself is refused too (§4), not only the REST call.
		res = carol.Do(t, "PUT", []string{"_matrix", "client", "v3", "rooms", roomA, "state", connectionType, roomB},
			client.WithJSONBody(t, map[string]any{"room_id": roomB, "via": []string{"hs1"}, "ferry": bot}))
		must.MatchResponse(t, res, forbidden)

		if conn := connection(t, alice, roomA, roomB); conn.Exists() {
			t.Fatalf("refused requests left a connection behind: %s", conn.Raw)
		}
	})

	t.Run("revocation by either side makes it revoked on both", func(t *testing.T) {
		alice, roomA := admin(t, d, "hs1", "alice", nil)
		bob, roomB := admin(t, d, "hs1", "bob", nil)
		posA, posB := since(t, alice), since(t, bob)
		requestConnection(t, alice, roomA, roomB)
		requestConnection(t, bob, roomB, roomA)
		waitForNotice(t, alice, posA, roomA, bot, "now connected")
		waitForNotice(t, bob, posB, roomB, bot, "now connected")
		posA, posB = since(t, alice), since(t, bob)

		res := bob.MustDo(t, "DELETE", api("rooms", roomB, "connections", roomA))
		must.MatchResponse(t, res, match.HTTPResponse{
			StatusCode: http.StatusOK,
			JSON: []match.JSON{
				match.JSONKeyEqual("room_id", roomA),
				match.JSONKeyEqual("status", statusRevoked),
			},
		})
		waitForNotice(t, alice, posA, roomA, bot, "has ended")
		waitForNotice(t, bob, posB, roomB, bot, "has ended")
		mustHaveStatus(t, alice, roomA, roomB, statusRevoked)
		mustHaveStatus(t, bob, roomB, roomA, statusRevoked)
	})
}
