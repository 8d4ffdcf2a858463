package msc2923_test

import (
	"strings"
	"testing"

	"github.com/matrix-org/complement/match"
	"github.com/matrix-org/complement/must"
	"github.com/tidwall/gjson"

	"synapse-room-connect/complement/deployer"
)

// fallback_mode: placeholder (docs/msc2923.md §8): a pointer says only who
// wrote in which room, with a link to the original; no content crosses.
func TestMSC2923PlaceholderMode(t *testing.T) {
	d := deployer.DeployWithModuleConfig(t, 1, map[string]any{"fallback_mode": "placeholder"})
	defer d.Destroy(t)
	p := connectedPair(t, d, "hs1")

	const secret = "the secret plan"
	sent := sendMessage(t, p.alice, p.roomA, secret, nil)
	pointer := waitForPointer(t, p.bob, p.roomB, sent)
	mustBePlaceholder(t, pointer, event(t, p.alice, p.roomA, sent), p.bot, "Alice", secret)

	const reply = "the secret answer"
	back := sendMessage(t, p.bob, p.roomB, reply, nil)
	mustBePlaceholder(t, waitForPointer(t, p.alice, p.roomA, back), event(t, p.bob, p.roomB, back), p.bot, "Bob", reply)
}

// mustBePlaceholder checks that pointer is the bot's placeholder notice for
// original, written by name, and that no part of its content holds text.
func mustBePlaceholder(t *testing.T, pointer, original gjson.Result, bot, name, text string) {
	t.Helper()
	roomID, eventID := original.Get("room_id").Str, original.Get("event_id").Str
	must.MatchGJSON(t, pointer,
		match.JSONKeyEqual("sender", bot),
		match.JSONKeyEqual("content.msgtype", "m.notice"),
		match.JSONKeyEqual(pointerPath+".event_id", eventID),
		match.JSONKeyEqual(pointerPath+".room_id", roomID),
	)
	body := pointer.Get("content.body").Str
	if want := name + " wrote in " + roomID; !strings.HasPrefix(body, want) {
		t.Errorf("placeholder body %q does not start with %q", body, want)
	}
	if link := "https://matrix.to/#/" + roomID + "/" + eventID; !strings.Contains(body, link) {
		t.Errorf("placeholder body %q has no link %s to the original", body, link)
	}
	if content := pointer.Get("content").Raw; strings.Contains(content, text) {
		t.Errorf("the placeholder's content carries the original's text %q: %s", text, content)
	}
}
