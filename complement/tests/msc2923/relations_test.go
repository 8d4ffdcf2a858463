package msc2923_test

import (
	"testing"

	"github.com/matrix-org/complement/match"
	"github.com/matrix-org/complement/must"

	"synapse-room-connect/complement/deployer"
)

// Reactions and threads (docs/msc2923.md §8): they map to the counterparts
// in the other room like replies do. The subtests share the homeserver, each
// with rooms of its own.
func TestMSC2923FerryReactionsAndThreads(t *testing.T) {
	d := deployer.Deploy(t, 1)
	defer d.Destroy(t)

	t.Run("reactions become the bot's, one per key and event", func(t *testing.T) {
		p := connectedPair(t, d, "hs1")
		carol := member(t, d, "hs1", "carol", "Carol", p.bob, p.roomB)
		question := sendMessage(t, p.alice, p.roomA, "react to me", nil)
		questionInB := waitForPointer(t, p.bob, p.roomB, question).Get("event_id").Str

		// Two users of B react to the pointer with the same key, one also
		// with another: in A the bot reacts to the original, once per key.
		sendReaction(t, p.bob, p.roomB, questionInB, "👍")
		sendReaction(t, carol, p.roomB, questionInB, "👍")
		sendReaction(t, carol, p.roomB, questionInB, "🎉")
		thumbs := waitForEvent(t, p.alice, p.roomA, reactionBy(p.bot, question, "👍"))
		must.MatchGJSON(t, thumbs, match.JSONKeyEqual(relatesPath, annotation(question, "👍")))
		waitForEvent(t, p.alice, p.roomA, reactionBy(p.bot, question, "🎉"))

		// Alice reacts to her own original: in B the bot reacts to its pointer.
		sendReaction(t, p.alice, p.roomA, question, "👀")
		waitForEvent(t, p.bob, p.roomB, reactionBy(p.bot, questionInB, "👀"))

		p.settle(t)
		eventsA, eventsB := timeline(t, p.alice, p.roomA), timeline(t, p.bob, p.roomB)
		mustOccur(t, eventsA, 1, reactionBy(p.bot, question, "👍"), "the bot's 👍 in A")
		mustOccur(t, eventsA, 1, reactionBy(p.bot, question, "🎉"), "the bot's 🎉 in A")
		mustOccur(t, eventsA, 3, isReaction, "reactions in A (the bot's two, Alice's)")
		mustOccur(t, eventsB, 1, reactionBy(p.bot, questionInB, "👀"), "the bot's 👀 in B")
		mustOccur(t, eventsB, 4, isReaction, "reactions in B (Bob's, Carol's two, the bot's)")
	})

	t.Run("thread messages stay in the mapped thread", func(t *testing.T) {
		p := connectedPair(t, d, "hs1")
		root := sendMessage(t, p.alice, p.roomA, "thread root", nil)
		rootInB := waitForPointer(t, p.bob, p.roomB, root).Get("event_id").Str

		// Alice replies in the thread, falling back to a reply to the root.
		first := sendMessage(t, p.alice, p.roomA, "first in thread", map[string]any{
			"m.relates_to": inThread(root, root, true),
		})
		firstInB := waitForPointer(t, p.bob, p.roomB, first)
		must.MatchGJSON(t, firstInB,
			match.JSONKeyEqual("sender", p.bot),
			match.JSONKeyEqual("content.body", "Alice: first in thread"),
			match.JSONKeyEqual(relatesPath, inThread(rootInB, rootInB, true)),
		)

		// Bob answers in B's thread with a real reply to that pointer: in A
		// it is in the original thread, replying to Alice's original.
		answer := sendMessage(t, p.bob, p.roomB, "answer in thread", map[string]any{
			"m.relates_to": inThread(rootInB, firstInB.Get("event_id").Str, false),
		})
		must.MatchGJSON(t, waitForPointer(t, p.alice, p.roomA, answer),
			match.JSONKeyEqual("sender", p.bot),
			match.JSONKeyEqual(relatesPath, inThread(root, first, false)),
		)

		// Synapse itself files the pointer under the thread of the root's pointer.
		res := p.bob.MustDo(t, "GET", []string{"_matrix", "client", "v1", "rooms", p.roomB, "relations", rootInB, "m.thread"})
		mustOccur(t, must.ParseJSON(t, res.Body).Get("chunk").Array(), 1, hasEventID(firstInB.Get("event_id").Str),
			"the pointer among the thread's messages in B")
	})
}
