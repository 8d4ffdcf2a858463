package msc2923_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/matrix-org/complement/b"
	"github.com/matrix-org/complement/client"
	"github.com/tidwall/gjson"

	"synapse-room-connect/complement/deployer"
)

// burstSize is how many messages the burst sends, half from each of two users.
const burstSize = 30

// A burst of messages from two users at once (docs/msc2923.md §8: exactly
// once and in order per connection, however the ferry batches its backlog).
func TestMSC2923Burst(t *testing.T) {
	d := deployer.Deploy(t, 1)
	defer d.Destroy(t)
	p := connectedPair(t, d, "hs1")
	carol := member(t, d, "hs1", "carol", "Carol", p.alice, p.roomA)
	posA, posB := since(t, p.alice), since(t, p.bob)

	// Both send at once, neither waiting for its messages to come down /sync.
	senders := []struct {
		c     *client.CSAPI
		name  string
		first int
	}{{p.alice, "Alice", 0}, {carol, "Carol", 1}}
	names := map[string]string{}
	var wg sync.WaitGroup
	for _, sender := range senders {
		names[sender.c.UserID] = sender.name
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := sender.first; n < burstSize; n += 2 {
				sender.c.Unsafe_SendEventUnsynced(t, p.roomA, b.Event{Type: "m.room.message", Content: map[string]any{
					"msgtype": "m.text", "body": fmt.Sprintf("burst %d from %s", n, sender.name),
				}})
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}

	isBurst := func(ev gjson.Result) bool {
		return ev.Get("type").Str == "m.room.message" && ev.Get("sender").Str != p.bot &&
			strings.HasPrefix(ev.Get("content.body").Str, "burst ")
	}
	sent := collect(t, p.alice, posA, p.roomA, burstSize, isBurst)
	originals := map[string]gjson.Result{}
	for _, ev := range sent {
		originals[ev.Get("event_id").Str] = ev
	}
	isBurstPointer := func(ev gjson.Result) bool {
		_, ok := originals[ev.Get(pointerPath+".event_id").Str]
		return ok && ev.Get("sender").Str == p.bot
	}
	arrived := collect(t, p.bob, posB, p.roomB, burstSize, isBurstPointer)
	if len(sent) != burstSize || len(arrived) != burstSize {
		t.Fatalf("want %d messages in A and as many pointers in B, got %d and %d", burstSize, len(sent), len(arrived))
	}

	// In B, in the order A stored them, each once, each readable.
	for i, pointer := range arrived {
		original := sent[i]
		if got := pointer.Get(pointerPath + ".event_id").Str; got != original.Get("event_id").Str {
			t.Errorf("pointer %d in B is to %s (%q), want %s (%q): pointers are out of order or repeated",
				i, got, originals[got].Get("content.body").Str, original.Get("event_id").Str, original.Get("content.body").Str)
			continue
		}
		// /sync leaves room_id out of the original; /event has it.
		full := event(t, p.alice, p.roomA, original.Get("event_id").Str)
		mustBePointer(t, pointer, full, p.bot, names[full.Get("sender").Str]+": "+full.Get("content.body").Str)
	}
	p.settle(t)
	eventsB := timeline(t, p.bob, p.roomB)
	mustOccur(t, eventsB, burstSize, isBurstPointer, "pointers in B to the burst")
	for id := range originals {
		mustOccur(t, eventsB, 1, pointerTo(id), "pointers in B to "+id)
	}
}
