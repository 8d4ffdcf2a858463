package msc2923_test

import (
	"testing"

	"github.com/matrix-org/complement/match"
	"github.com/matrix-org/complement/must"
	"github.com/tidwall/gjson"

	"synapse-room-connect/complement/deployer"
)

// The ferry between rooms on two homeservers (docs/msc2923.md §8, §9), with
// hs1's bot as the ferry: Alice's message on hs1 reaches room B on hs2 as a
// pointer, Bob's reply comes back as a reply to her original, each once, and
// hs2's own bot ferries nothing.
func TestMSC2923FerryOverFederation(t *testing.T) {
	d := deployer.Deploy(t, 2)
	defer d.Destroy(t)
	hs1 := string(d.GetFullyQualifiedHomeserverName(t, "hs1"))
	p := connectedAcross(t, d)
	otherBot := ferryBot(t, d, "hs2")

	hello := sendMessage(t, p.alice, p.roomA, "hello over federation", nil)
	inB := waitForPointer(t, p.bob, p.roomB, hello)
	mustBePointer(t, inB, event(t, p.alice, p.roomA, hello), p.bot, "Alice: hello over federation")
	// hs2 is not in room A, so it can neither vouch for nor load the
	// original: Bob gets the placeholder.
	must.MatchGJSON(t, inB, match.JSONKeyEqual(originalPath, map[string]any{
		"placeholder": true, "room_id": p.roomA, "via": []any{hs1},
	}))

	reply := sendMessage(t, p.bob, p.roomB, "hi back", map[string]any{
		"m.relates_to": map[string]any{"m.in_reply_to": map[string]any{"event_id": inB.Get("event_id").Str}},
	})
	inA := waitForPointer(t, p.alice, p.roomA, reply)
	mustBePointer(t, inA, event(t, p.bob, p.roomB, reply), p.bot, "Bob: hi back")
	must.MatchGJSON(t, inA,
		match.JSONKeyEqual(relatesPath, map[string]any{"m.in_reply_to": map[string]any{"event_id": hello}}),
		// hs1 is in room B through its bot and sent this pointer, so it
		// expands it for Alice.
		match.JSONKeyEqual(originalPath+".event_id", reply),
		match.JSONKeyEqual(originalPath+".room_id", p.roomB),
		match.JSONKeyEqual(originalPath+".sender", p.bob.UserID),
		match.JSONKeyEqual(originalPath+".content.body", "hi back"),
	)

	eventsA, eventsB := p.mustCarryOnce(t, hello, inB, reply, inA)
	for name, events := range map[string][]gjson.Result{"A": eventsA, "B": eventsB} {
		mustOccur(t, events, 0, func(ev gjson.Result) bool {
			return ev.Get(pointerPath).Exists() && ev.Get("sender").Str != p.bot
		}, "pointers in "+name+" from anyone but hs1's bot")
		mustOccur(t, events, 0, func(ev gjson.Result) bool {
			return ev.Get("sender").Str == otherBot && ev.Get("type").Str == "m.room.message"
		}, "messages in "+name+" from hs2's bot")
	}
}
