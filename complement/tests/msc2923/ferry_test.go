package msc2923_test

import (
	"testing"

	"github.com/matrix-org/complement/match"
	"github.com/matrix-org/complement/must"
	"github.com/tidwall/gjson"

	"synapse-room-connect/complement/deployer"
)

// The ferry on one homeserver (docs/msc2923.md §8): every message of a
// connected room reaches the other as a pointer from the bot, once, and
// relations map to the counterparts. The subtests share the homeserver, each
// with rooms of its own.
func TestMSC2923Ferry(t *testing.T) {
	d := deployer.Deploy(t, 1)
	defer d.Destroy(t)

	t.Run("messages cross both ways as pointers, each exactly once", func(t *testing.T) {
		p := connectedPair(t, d, "hs1")
		hello := sendMessage(t, p.alice, p.roomA, "Hello from A", nil)
		inB := waitForPointer(t, p.bob, p.roomB, hello)
		mustBePointer(t, inB, event(t, p.alice, p.roomA, hello), p.bot, "Alice: Hello from A")
		must.MatchGJSON(t, inB,
			match.JSONKeyEqual("content.com\\.beeper\\.per_message_profile.id", p.alice.UserID),
			match.JSONKeyEqual("content.com\\.beeper\\.per_message_profile.displayname", "Alice"),
		)

		back := sendMessage(t, p.bob, p.roomB, "Hello from B", nil)
		inA := waitForPointer(t, p.alice, p.roomA, back)
		mustBePointer(t, inA, event(t, p.bob, p.roomB, back), p.bot, "Bob: Hello from B")

		p.mustCarryOnce(t, hello, inB, back, inA)
	})

	t.Run("replies, edits and redactions map to the counterparts", func(t *testing.T) {
		p := connectedPair(t, d, "hs1")
		question := sendMessage(t, p.alice, p.roomA, "question?", nil)
		questionInB := waitForPointer(t, p.bob, p.roomB, question).Get("event_id").Str

		// Bob replies to the pointer: in A that is a reply to the original.
		answer := sendMessage(t, p.bob, p.roomB, "answer!", map[string]any{
			"m.relates_to": map[string]any{"m.in_reply_to": map[string]any{"event_id": questionInB}},
		})
		must.MatchGJSON(t, waitForPointer(t, p.alice, p.roomA, answer),
			match.JSONKeyEqual("sender", p.bot),
			match.JSONKeyEqual(relatesPath, map[string]any{"m.in_reply_to": map[string]any{"event_id": question}}),
		)

		// Alice edits her original: the bot edits its pointer in B.
		edit := sendEdit(t, p.alice, p.roomA, question, "question, edited?")
		editInB := waitForEvent(t, p.bob, p.roomB, func(ev gjson.Result) bool {
			return ev.Get(pointerPath+".event_id").Str == edit
		})
		must.MatchGJSON(t, editInB,
			match.JSONKeyEqual("sender", p.bot),
			match.JSONKeyEqual(relatesPath+".rel_type", "m.replace"),
			match.JSONKeyEqual(relatesPath+".event_id", questionInB),
			match.JSONKeyEqual(newBodyPath, "Alice: question, edited?"),
		)

		// Alice redacts her original: the bot redacts its pointer in B.
		p.alice.MustSendRedaction(t, p.roomA, map[string]any{"reason": "oops"}, question)
		waitForEvent(t, p.bob, p.roomB, func(ev gjson.Result) bool {
			return ev.Get("type").Str == "m.room.redaction" &&
				ev.Get("sender").Str == p.bot &&
				(ev.Get("redacts").Str == questionInB || ev.Get("content.redacts").Str == questionInB)
		})
		must.MatchGJSON(t, event(t, p.bob, p.roomB, questionInB), match.JSONKeyEqual("content", map[string]any{}))
	})
}

// pointsAt matches any event of the bot's that names one of eventIDs as its
// original: pointers, and pointers' edits.
func pointsAt(eventIDs ...string) func(gjson.Result) bool {
	return func(ev gjson.Result) bool {
		named := ev.Get(pointerPath + ".event_id").Str
		for _, id := range eventIDs {
			if named == id {
				return true
			}
		}
		return false
	}
}
