package msc2923_test

import (
	"strings"
	"testing"
	"time"

	"github.com/matrix-org/complement/b"
	"github.com/matrix-org/complement/client"
	"github.com/matrix-org/complement/helpers"
	"github.com/matrix-org/complement/match"
	"github.com/matrix-org/complement/must"
	"github.com/tidwall/gjson"

	"synapse-room-connect/complement/deployer"
)

// connectionType is the state event of docs/msc2923.md §1.
const connectionType = "org.matrix.msc2923.connection"

// Statuses of docs/msc2923.md §2.
const (
	statusRequested = "requested"
	statusIncoming  = "incoming"
	statusActive    = "active"
	statusRevoked   = "revoked"
)

// api is a path under the module's REST base, /_synapse/client/org.matrix.msc2923.
func api(parts ...string) []string {
	return append([]string{"_synapse", "client", "org.matrix.msc2923"}, parts...)
}

// ferryBot is the user ID of hsName's ferry bot, from the module's info endpoint.
func ferryBot(t *testing.T, d deployer.Deployment, hsName string) string {
	t.Helper()
	res := d.UnauthenticatedClient(t, hsName).MustDo(t, "GET", api("info"))
	return must.GetJSONFieldStr(t, must.ParseJSON(t, res.Body), "bot_user_id")
}

// admin registers a user on hsName and creates a room it administers (the
// creator has power level 100). Rooms are version 12, Synapse's own default,
// unless opts say otherwise.
func admin(t *testing.T, d deployer.Deployment, hsName, name string, room map[string]any) (*client.CSAPI, string) {
	t.Helper()
	c := user(t, d, hsName, name)
	return c, createRoom(t, c, name, room)
}

// user registers a user on hsName whose localpart ends in name.
func user(t *testing.T, d deployer.Deployment, hsName, name string) *client.CSAPI {
	t.Helper()
	c := d.Register(t, hsName, helpers.RegistrationOpts{LocalpartSuffix: name})
	// Bot notices over federation can take a while on a busy two-core machine.
	c.SyncUntilTimeout = federationTimeout
	return c
}

// createRoom creates, as c, a room named after name, version 12 unless room
// says otherwise.
func createRoom(t *testing.T, c *client.CSAPI, name string, room map[string]any) string {
	t.Helper()
	body := map[string]any{"room_version": "12", "name": name + "'s room"}
	for k, v := range room {
		body[k] = v
	}
	return c.MustCreateRoom(t, body)
}

// requestConnection asks, as c, to connect roomID to other over the REST API,
// with the bot sending what crosses into roomID: these tests pin the bot's
// pointers (sender, rendering, relations). Ghost senders, the default, are
// tested by the Python suite (tests/test_ghosts.py, tests/test_js_sdk_client.py).
func requestConnection(t *testing.T, c *client.CSAPI, roomID, other string, via ...string) gjson.Result {
	t.Helper()
	body := map[string]any{"room": other, "senders": "bot"}
	if len(via) > 0 {
		body["via"] = via
	}
	res := c.MustDo(t, "POST", api("rooms", roomID, "connections"), client.WithJSONBody(t, body))
	return must.ParseJSON(t, res.Body)
}

// connection is roomID's view of its connection to other, as the REST API
// lists it; it does not exist when there is none.
func connection(t *testing.T, c *client.CSAPI, roomID, other string) gjson.Result {
	t.Helper()
	res := c.MustDo(t, "GET", api("rooms", roomID, "connections"))
	body := must.ParseJSON(t, res.Body)
	must.MatchGJSON(t, body, match.JSONKeyEqual("room_id", roomID))
	for _, conn := range body.Get("connections").Array() {
		if conn.Get("room_id").Str == other {
			return conn
		}
	}
	return gjson.Result{}
}

// mustHaveStatus fails the test unless roomID sees its connection to other
// with the given status.
func mustHaveStatus(t *testing.T, c *client.CSAPI, roomID, other, status string) {
	t.Helper()
	conn := connection(t, c, roomID, other)
	if !conn.Exists() {
		t.Fatalf("%s lists no connection to %s; want status %q", roomID, other, status)
	}
	must.MatchGJSON(t, conn, match.JSONKeyEqual("status", status))
}

// setConnectionState sends, as c, roomID's connection event about other.
func setConnectionState(t *testing.T, c *client.CSAPI, roomID, other string, content map[string]any) string {
	t.Helper()
	return c.SendEventSynced(t, roomID, b.Event{Type: connectionType, StateKey: &other, Content: content})
}

// since is c's current sync position: events after it are new to a
// MustSyncUntil that starts there, however many came before.
func since(t *testing.T, c *client.CSAPI) string {
	t.Helper()
	return c.MustSyncUntil(t, client.SyncReq{})
}

// noticeFrom matches an m.notice from bot whose body contains text.
func noticeFrom(bot, text string) func(gjson.Result) bool {
	return func(ev gjson.Result) bool {
		return ev.Get("sender").Str == bot &&
			ev.Get("type").Str == "m.room.message" &&
			ev.Get("content.msgtype").Str == "m.notice" &&
			strings.Contains(ev.Get("content.body").Str, text)
	}
}

// membershipOf matches userID's membership event with the given membership.
func membershipOf(userID, membership string) func(gjson.Result) bool {
	return func(ev gjson.Result) bool {
		return ev.Get("type").Str == "m.room.member" &&
			ev.Get("state_key").Str == userID &&
			ev.Get("content.membership").Str == membership
	}
}

// waitForNotice syncs from pos until bot's notice containing text is in roomID.
func waitForNotice(t *testing.T, c *client.CSAPI, pos, roomID, bot, text string) {
	t.Helper()
	c.MustSyncUntil(t, client.SyncReq{Since: pos}, client.SyncTimelineHas(roomID, noticeFrom(bot, text)))
}

// federationTimeout bounds waits that cross servers or wait for the bot.
const federationTimeout = 60 * time.Second
