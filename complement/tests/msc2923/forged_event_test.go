package msc2923_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/matrix-org/complement/b"
	"github.com/matrix-org/complement/client"
	"github.com/matrix-org/complement/federation"
	"github.com/matrix-org/complement/must"

	"synapse-room-connect/complement/deployer"
)

// A connection event from another server is never refused (that would fork
// the room's state) but is no consent unless its sender had the power to
// approve when it was sent (docs/msc2923.md §2, §4). Here a Complement mock
// server joins room A, is made moderator (power 50: enough for the room's
// auth rules to accept its state events, below the module's 100) and sends a
// connection event approving room C's request. hs1 must accept the event and
// ignore it: the request stays incoming.
func TestMSC2923ForgedRemoteConsentIsIgnored(t *testing.T) {
	d := deployer.Deploy(t, 1)
	defer d.Destroy(t)
	hs1 := d.GetFullyQualifiedHomeserverName(t, "hs1")
	bot := ferryBot(t, d, "hs1")

	srv := federation.NewServer(t, d,
		federation.HandleKeyRequests(),
		federation.HandleTransactionRequests(nil, nil),
	)
	cancel := srv.Listen()
	defer cancel()

	// Version 10: the mock's federation library predates version 12.
	alice, roomA := admin(t, d, "hs1", "alice", map[string]any{"preset": "public_chat", "room_version": "10"})
	roomC := alice.MustCreateRoom(t, map[string]any{"preset": "public_chat", "room_version": "10", "name": "C"})
	pos := since(t, alice)
	requestConnection(t, alice, roomC, roomA)
	waitForNotice(t, alice, pos, roomA, bot, "asks to connect to this room")
	mustHaveStatus(t, alice, roomA, roomC, statusIncoming)

	mallory := srv.UserID("mallory")
	room := srv.MustJoinRoom(t, d, hs1, roomA, mallory)
	alice.MustSyncUntil(t, client.SyncReq{Since: pos}, client.SyncJoinedTo(mallory, roomA))

	promoted := setPowerLevel(t, alice, roomA, mallory, 50)
	room.WaiterForEvent(promoted).Waitf(t, federationTimeout, "the mock server never received the power levels event %s", promoted)

	forged := srv.MustCreateEvent(t, room, federation.Event{
		Type:     connectionType,
		StateKey: &roomC,
		Sender:   mallory,
		Content:  map[string]any{"room_id": roomC, "via": []string{string(hs1)}, "ferry": bot},
	})
	room.AddEvent(forged)
	pos = since(t, alice)
	srv.MustSendTransaction(t, d, string(hs1), []json.RawMessage{forged.JSON()}, nil)
	// Accepted into the room: a server must not refuse another server's events.
	alice.MustSyncUntil(t, client.SyncReq{Since: pos}, client.SyncTimelineHasEventID(roomA, forged.EventID()))

	// The bot handles room events in order, so once it has answered a command
	// sent after the forged event, it has judged the forged event too.
	pos = since(t, alice)
	alice.SendEventSynced(t, roomA, b.Event{
		Type:    "m.room.message",
		Content: map[string]any{"msgtype": "m.text", "body": "!connect list"},
	})
	waitForNotice(t, alice, pos, roomA, bot, "Connections of this room")

	mustHaveStatus(t, alice, roomA, roomC, statusIncoming)
	mustHaveStatus(t, alice, roomC, roomA, statusRequested)
	log := d.ServerLog(t, "hs1")
	for _, want := range []string{"Ignoring connection event " + forged.EventID(), "had power level 50 < 100"} {
		if !strings.Contains(log, want) {
			t.Errorf("hs1 did not log %q", want)
		}
	}
}

// setPowerLevel gives userID the power level in roomID, as c, and returns the
// power levels event's ID.
func setPowerLevel(t *testing.T, c *client.CSAPI, roomID, userID string, level int) string {
	t.Helper()
	res := c.MustDo(t, "GET", []string{"_matrix", "client", "v3", "rooms", roomID, "state", "m.room.power_levels", ""})
	var content map[string]any
	must.NotError(t, "decoding power levels", json.Unmarshal([]byte(must.ParseJSON(t, res.Body).Raw), &content))
	users, _ := content["users"].(map[string]any)
	if users == nil {
		users = map[string]any{}
	}
	users[userID] = level
	content["users"] = users
	empty := ""
	return c.SendEventSynced(t, roomID, b.Event{Type: "m.room.power_levels", StateKey: &empty, Content: content})
}
