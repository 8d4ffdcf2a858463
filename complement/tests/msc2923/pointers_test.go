package msc2923_test

import (
	"fmt"
	"net/http"
	"net/url"
	"testing"

	"github.com/matrix-org/complement/b"
	"github.com/matrix-org/complement/client"
	"github.com/matrix-org/complement/match"
	"github.com/matrix-org/complement/must"
	"github.com/tidwall/gjson"

	"synapse-room-connect/complement/deployer"
)

// Keys of docs/msc2923.md §8 and §9.
const (
	pointerKey  = "org.matrix.msc2923.pointer"
	originalKey = "org.matrix.msc2923.original"
)

// Paths into an event for gjson and match, with the dotted keys escaped.
var (
	pointerPath  = "content." + client.GjsonEscape(pointerKey)
	originalPath = "unsigned." + client.GjsonEscape(originalKey)
	relatesPath  = "content.m\\.relates_to"
	newBodyPath  = "content.m\\.new_content.body"
)

// timelineFilter makes an initial /sync carry enough of each room's timeline
// that an event already sent is in it, so a wait cannot miss it.
const timelineFilter = `{"room":{"timeline":{"limit":100}}}`

// connectedRooms is room A and room B with an active connection between
// them, each administered by its own user, and the ferry bot acting on it.
type connectedRooms struct {
	alice *client.CSAPI
	roomA string
	bob   *client.CSAPI
	roomB string
	bot   string
}

// named registers a user on hsName with a display name, set before any room
// is created so that the user's membership events carry it.
func named(t *testing.T, d deployer.Deployment, hsName, name, displayName string) *client.CSAPI {
	t.Helper()
	c := user(t, d, hsName, name)
	c.MustDo(t, "PUT", []string{"_matrix", "client", "v3", "profile", c.UserID, "displayname"},
		client.WithJSONBody(t, map[string]any{"displayname": displayName}))
	return c
}

// member registers a user on hsName with a display name and has inviter
// invite it into roomID, which it joins.
func member(t *testing.T, d deployer.Deployment, hsName, name, displayName string, inviter *client.CSAPI, roomID string) *client.CSAPI {
	t.Helper()
	c := named(t, d, hsName, name, displayName)
	inviter.MustInviteRoom(t, roomID, c.UserID)
	c.MustJoinRoom(t, roomID, nil)
	return c
}

// connectedPair connects two new rooms on hsName through the REST handshake:
// Alice's room A asks, Bob's room B approves.
func connectedPair(t *testing.T, d deployer.Deployment, hsName string) connectedRooms {
	t.Helper()
	p := connectedRooms{bot: ferryBot(t, d, hsName)}
	p.alice = named(t, d, hsName, "alice", "Alice")
	p.bob = named(t, d, hsName, "bob", "Bob")
	p.roomA = createRoom(t, p.alice, "alice", nil)
	p.roomB = createRoom(t, p.bob, "bob", nil)
	posA, posB := since(t, p.alice), since(t, p.bob)
	requestConnection(t, p.alice, p.roomA, p.roomB)
	must.MatchGJSON(t, requestConnection(t, p.bob, p.roomB, p.roomA), match.JSONKeyEqual("status", statusActive))
	waitForNotice(t, p.alice, posA, p.roomA, p.bot, "now connected")
	waitForNotice(t, p.bob, posB, p.roomB, p.bot, "now connected")
	return p
}

// connectedAcross connects Alice's room A on hs1 and Bob's room B on hs2 with
// hs1's bot as the ferry, as TestMSC2923HandshakeOverFederation does: A asks
// over REST, B's admin invites hs1's bot and consents with a state event.
func connectedAcross(t *testing.T, d deployer.Deployment) connectedRooms {
	t.Helper()
	hs1 := string(d.GetFullyQualifiedHomeserverName(t, "hs1"))
	hs2 := string(d.GetFullyQualifiedHomeserverName(t, "hs2"))
	p := connectedRooms{bot: ferryBot(t, d, "hs1")}
	p.alice = named(t, d, "hs1", "alice", "Alice")
	p.bob = named(t, d, "hs2", "bob", "Bob")
	p.roomA = createRoom(t, p.alice, "alice", nil)
	p.roomB = createRoom(t, p.bob, "bob", nil) // private: the bot needs an invite
	posA := since(t, p.alice)
	requestConnection(t, p.alice, p.roomA, p.roomB, hs2)
	waitForNotice(t, p.alice, posA, p.roomA, p.bot, "Requested a connection")

	posB := since(t, p.bob)
	p.bob.MustInviteRoom(t, p.roomB, p.bot)
	p.bob.MustSyncUntil(t, client.SyncReq{Since: posB}, client.SyncTimelineHas(p.roomB, membershipOf(p.bot, "join")))
	posA, posB = since(t, p.alice), since(t, p.bob)
	setConnectionState(t, p.bob, p.roomB, p.roomA, map[string]any{"room_id": p.roomA, "via": []string{hs1}, "ferry": p.bot, "senders": "bot"})
	waitForNotice(t, p.alice, posA, p.roomA, p.bot, "now connected")
	waitForNotice(t, p.bob, posB, p.roomB, p.bot, "now connected")
	return p
}

// sendMessage sends, as c, an m.text message with body and any extra content
// keys into roomID, and returns its event ID.
func sendMessage(t *testing.T, c *client.CSAPI, roomID, body string, extra map[string]any) string {
	t.Helper()
	content := map[string]any{"msgtype": "m.text", "body": body}
	for k, v := range extra {
		content[k] = v
	}
	return c.SendEventSynced(t, roomID, b.Event{Type: "m.room.message", Content: content})
}

// sendEdit replaces, as c, the text of originalID with newBody.
func sendEdit(t *testing.T, c *client.CSAPI, roomID, originalID, newBody string) string {
	t.Helper()
	return sendMessage(t, c, roomID, "* "+newBody, map[string]any{
		"m.new_content": map[string]any{"msgtype": "m.text", "body": newBody},
		"m.relates_to":  map[string]any{"rel_type": "m.replace", "event_id": originalID},
	})
}

// sendReaction reacts, as c, to eventID of roomID with key.
func sendReaction(t *testing.T, c *client.CSAPI, roomID, eventID, key string) string {
	t.Helper()
	return c.SendEventSynced(t, roomID, b.Event{Type: "m.reaction", Content: map[string]any{
		"m.relates_to": annotation(eventID, key),
	}})
}

// annotation is the m.relates_to of a reaction to eventID with key.
func annotation(eventID, key string) map[string]any {
	return map[string]any{"rel_type": "m.annotation", "event_id": eventID, "key": key}
}

// reactionBy matches sender's reaction to eventID with key.
func reactionBy(sender, eventID, key string) func(gjson.Result) bool {
	return func(ev gjson.Result) bool {
		return ev.Get("type").Str == "m.reaction" && ev.Get("sender").Str == sender &&
			ev.Get(relatesPath+".rel_type").Str == "m.annotation" &&
			ev.Get(relatesPath+".event_id").Str == eventID &&
			ev.Get(relatesPath+".key").Str == key
	}
}

// isReaction matches any reaction.
func isReaction(ev gjson.Result) bool { return ev.Get("type").Str == "m.reaction" }

// inThread is the m.relates_to of a message in the thread of root that
// replies to replyTo; fallingBack says the reply is only the fallback for
// clients without threads (replyTo is then the thread's latest message).
func inThread(root, replyTo string, fallingBack bool) map[string]any {
	return map[string]any{
		"rel_type": "m.thread", "event_id": root, "is_falling_back": fallingBack,
		"m.in_reply_to": map[string]any{"event_id": replyTo},
	}
}

// pointerTo matches a pointer (not a pointer's edit) whose original is
// originalID.
func pointerTo(originalID string) func(gjson.Result) bool {
	return func(ev gjson.Result) bool {
		return ev.Get("type").Str == "m.room.message" &&
			ev.Get(pointerPath+".event_id").Str == originalID &&
			!ev.Get("content.m\\.new_content").Exists()
	}
}

// hasEventID matches the event eventID.
func hasEventID(eventID string) func(gjson.Result) bool {
	return func(ev gjson.Result) bool { return ev.Get("event_id").Str == eventID }
}

// waitForEvent syncs as c until an event of roomID's timeline passes check,
// and returns it as /sync served it. It starts from an initial sync, so an
// event that is already there counts.
func waitForEvent(t *testing.T, c *client.CSAPI, roomID string, check func(gjson.Result) bool) gjson.Result {
	t.Helper()
	var found gjson.Result
	c.MustSyncUntil(t, client.SyncReq{Filter: timelineFilter}, client.SyncTimelineHas(roomID, func(ev gjson.Result) bool {
		if check(ev) {
			found = ev
			return true
		}
		return false
	}))
	return found
}

// collect syncs as c from pos until roomID's timeline has brought n
// events that pass check, and returns them in the order /sync delivered
// them, which is the order the server stored them in.
func collect(t *testing.T, c *client.CSAPI, pos, roomID string, n int, check func(gjson.Result) bool) []gjson.Result {
	t.Helper()
	var got []gjson.Result
	c.MustSyncUntil(t, client.SyncReq{Since: pos, Filter: timelineFilter}, func(_ string, sync gjson.Result) error {
		for _, ev := range sync.Get("rooms.join." + client.GjsonEscape(roomID) + ".timeline.events").Array() {
			if check(ev) {
				got = append(got, ev)
			}
		}
		if len(got) < n {
			return fmt.Errorf("%d of %d events in %s so far", len(got), n, roomID)
		}
		return nil
	})
	return got
}

// waitForPointer waits until c sees in roomID the pointer to originalID.
func waitForPointer(t *testing.T, c *client.CSAPI, roomID, originalID string) gjson.Result {
	t.Helper()
	return waitForEvent(t, c, roomID, pointerTo(originalID))
}

// freshEvent waits until a new initial /sync of c serves eventID of roomID
// so that check passes, and returns it. Expansions are computed as events
// are served, so this sees an original change under a pointer already sent.
func freshEvent(t *testing.T, c *client.CSAPI, roomID, eventID string, check func(gjson.Result) bool) gjson.Result {
	t.Helper()
	find := func(body []byte) gjson.Result {
		for _, ev := range gjson.GetBytes(body, "rooms.join."+client.GjsonEscape(roomID)+".timeline.events").Array() {
			if ev.Get("event_id").Str == eventID {
				return ev
			}
		}
		return gjson.Result{}
	}
	res := c.MustDo(t, "GET", []string{"_matrix", "client", "v3", "sync"},
		client.WithQueries(url.Values{"filter": {timelineFilter}, "timeout": {"0"}}),
		client.WithRetryUntil(federationTimeout, func(res *http.Response) bool {
			ev := find(client.ParseJSON(t, res))
			return ev.Exists() && check(ev)
		}))
	return find(client.ParseJSON(t, res))
}

// timeline is every event of roomID that c can page through with
// /messages, oldest first.
func timeline(t *testing.T, c *client.CSAPI, roomID string) []gjson.Result {
	t.Helper()
	var events []gjson.Result
	from := ""
	for {
		query := url.Values{"dir": {"b"}, "limit": {"100"}}
		if from != "" {
			query.Set("from", from)
		}
		res := c.MustDo(t, "GET", []string{"_matrix", "client", "v3", "rooms", roomID, "messages"}, client.WithQueries(query))
		page := must.ParseJSON(t, res.Body)
		chunk := page.Get("chunk").Array()
		for _, ev := range chunk {
			events = append([]gjson.Result{ev}, events...)
		}
		from = page.Get("end").Str
		if len(chunk) == 0 || from == "" {
			return events
		}
	}
}

// matching is the events that pass check.
func matching(events []gjson.Result, check func(gjson.Result) bool) []gjson.Result {
	var out []gjson.Result
	for _, ev := range events {
		if check(ev) {
			out = append(out, ev)
		}
	}
	return out
}

// settle returns once the ferry has carried, both ways, everything sent
// before it: the ferry delivers in order per connection, so once a marker
// sent now has crossed, whatever it was going to send earlier has too.
func (p connectedRooms) settle(t *testing.T) {
	t.Helper()
	toB := sendMessage(t, p.alice, p.roomA, "marker from A", nil)
	toA := sendMessage(t, p.bob, p.roomB, "marker from B", nil)
	waitForPointer(t, p.bob, p.roomB, toB)
	waitForPointer(t, p.alice, p.roomA, toA)
}

// mustCarryOnce settles p and checks that fromA (a message of room A, whose
// pointer in B is inB) and fromB (a message of B, whose pointer in A is inA)
// each have exactly one pointer in the other room, and that pointers never
// travel on: no room gets a pointer to its own message, nor to the other
// room's pointer to it. It returns both timelines for further checks.
func (p connectedRooms) mustCarryOnce(t *testing.T, fromA string, inB gjson.Result, fromB string, inA gjson.Result) (eventsA, eventsB []gjson.Result) {
	t.Helper()
	p.settle(t)
	eventsA, eventsB = timeline(t, p.alice, p.roomA), timeline(t, p.bob, p.roomB)
	mustOccur(t, eventsB, 1, pointerTo(fromA), "pointers in B to A's message")
	mustOccur(t, eventsA, 1, pointerTo(fromB), "pointers in A to B's message")
	mustOccur(t, eventsA, 0, pointsAt(fromA, inB.Get("event_id").Str), "pointers in A to A's message or its pointer")
	mustOccur(t, eventsB, 0, pointsAt(fromB, inA.Get("event_id").Str), "pointers in B to B's message or its pointer")
	return eventsA, eventsB
}

// mustBePointer checks that pointer is the bot's pointer in its room to
// original (an event as its own room serves it), readable as body.
func mustBePointer(t *testing.T, pointer, original gjson.Result, bot, body string) {
	t.Helper()
	must.MatchGJSON(t, pointer,
		match.JSONKeyEqual("sender", bot),
		match.JSONKeyEqual("type", "m.room.message"),
		match.JSONKeyEqual("content.msgtype", "m.text"),
		match.JSONKeyEqual("content.body", body),
		match.JSONKeyEqual(pointerPath, map[string]any{
			"room_id":          original.Get("room_id").Str,
			"event_id":         original.Get("event_id").Str,
			"sender":           original.Get("sender").Str,
			"origin_server_ts": original.Get("origin_server_ts").Int(),
		}),
	)
}

// event is eventID of roomID as c is served it by /event.
func event(t *testing.T, c *client.CSAPI, roomID, eventID string) gjson.Result {
	t.Helper()
	res := c.MustDo(t, "GET", []string{"_matrix", "client", "v3", "rooms", roomID, "event", eventID})
	return must.ParseJSON(t, res.Body)
}

// mustOccur fails the test unless exactly want of events pass check.
func mustOccur(t *testing.T, events []gjson.Result, want int, check func(gjson.Result) bool, what string) {
	t.Helper()
	if got := matching(events, check); len(got) != want {
		raw := make([]string, len(got))
		for i, ev := range got {
			raw[i] = ev.Raw
		}
		t.Errorf("%s: want %d, got %d: %s", what, want, len(got), fmt.Sprint(raw))
	}
}
