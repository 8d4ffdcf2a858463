package msc2923_test

import (
	"testing"

	"github.com/matrix-org/complement/client"
	"github.com/matrix-org/complement/match"
	"github.com/matrix-org/complement/must"

	"synapse-room-connect/complement/deployer"
)

// The handshake between rooms on two homeservers (docs/msc2923.md §5):
// room A's admin on hs1 requests over REST; room B's admin on hs2, whose
// server cannot act for hs1's bot, invites that bot into B and consents with
// a state event naming it. Revoking from B ends it on hs1 too.
func TestMSC2923HandshakeOverFederation(t *testing.T) {
	d := deployer.Deploy(t, 2)
	defer d.Destroy(t)
	hs1 := string(d.GetFullyQualifiedHomeserverName(t, "hs1"))
	hs2 := string(d.GetFullyQualifiedHomeserverName(t, "hs2"))
	bot := ferryBot(t, d, "hs1")
	alice, roomA := admin(t, d, "hs1", "alice", nil)
	bob, roomB := admin(t, d, "hs2", "bob", nil) // private: the bot needs an invite
	posA := since(t, alice)

	must.MatchGJSON(t, requestConnection(t, alice, roomA, roomB, hs2),
		match.JSONKeyEqual("status", statusRequested),
		match.JSONKeyEqual("via", []any{hs2}),
	)
	waitForNotice(t, alice, posA, roomA, bot, "Requested a connection")

	posB := since(t, bob)
	bob.MustInviteRoom(t, roomB, bot)
	bob.MustSyncUntil(t, client.SyncReq{Since: posB}, client.SyncTimelineHas(roomB, membershipOf(bot, "join")))
	posA, posB = since(t, alice), since(t, bob)
	setConnectionState(t, bob, roomB, roomA, map[string]any{"room_id": roomA, "via": []string{hs1}, "ferry": bot})

	waitForNotice(t, alice, posA, roomA, bot, "now connected")
	waitForNotice(t, bob, posB, roomB, bot, "now connected")
	mustHaveStatus(t, alice, roomA, roomB, statusActive)
	// hs2 is not in room A, so it cannot see A's consent: it reports B's own
	// request, as documented in §2.
	mustHaveStatus(t, bob, roomB, roomA, statusRequested)

	posA = since(t, alice)
	setConnectionState(t, bob, roomB, roomA, map[string]any{})
	waitForNotice(t, alice, posA, roomA, bot, "has ended")
	mustHaveStatus(t, alice, roomA, roomB, statusRevoked)
}
