package msc2923_test

import (
	"net/http"
	"net/url"
	"testing"

	"github.com/matrix-org/complement/client"
	"github.com/matrix-org/complement/match"
	"github.com/matrix-org/complement/must"
	"github.com/tidwall/gjson"

	"synapse-room-connect/complement/deployer"
)

// The merged timeline (docs/msc2923.md §9): GET .../rooms/{roomId}/messages
// answers like /messages, with each pointer the reader may resolve replaced
// by its original.
func TestMSC2923MergedTimeline(t *testing.T) {
	d := deployer.Deploy(t, 1)
	defer d.Destroy(t)
	p := connectedPair(t, d, "hs1")
	hello := sendMessage(t, p.alice, p.roomA, "hello B", nil)
	pointer := waitForPointer(t, p.bob, p.roomB, hello).Get("event_id").Str
	own := sendMessage(t, p.bob, p.roomB, "Bob's own", nil)
	// Right room, real event, but named by Bob rather than sent by the ferry.
	forged := sendMessage(t, p.bob, p.roomB, "impostor", map[string]any{pointerKey: map[string]any{
		"room_id": p.roomA, "event_id": hello, "sender": p.alice.UserID, "origin_server_ts": 0,
	}})
	p.settle(t) // nothing more arrives in B while it is read

	t.Run("a member of B gets the originals in place of the pointers", func(t *testing.T) {
		page := mustMergedPage(t, p.bob, p.roomB, nil)
		must.MatchGJSON(t, page, match.JSONKeyTypeEqual("start", gjson.String), match.JSONKeyTypeEqual("end", gjson.String))
		merged := page.Get("chunk").Array()
		mustOccur(t, merged, 0, hasEventID(pointer), "the pointer itself")
		shown := matching(merged, hasEventID(hello))
		if len(shown) != 1 {
			t.Fatalf("want the original %s once in the merged timeline, got %d: %s", hello, len(shown), page.Raw)
		}
		must.MatchGJSON(t, shown[0],
			match.JSONKeyEqual("room_id", p.roomA),
			match.JSONKeyEqual("sender", p.alice.UserID),
			match.JSONKeyEqual("content", map[string]any{"msgtype": "m.text", "body": "hello B"}),
			match.JSONKeyEqual("unsigned."+client.GjsonEscape(pointerKey), map[string]any{"room_id": p.roomB, "event_id": pointer}),
		)
		for _, id := range []string{own, forged} {
			kept := matching(merged, hasEventID(id))
			if len(kept) != 1 {
				t.Fatalf("want %s once, unchanged, in the merged timeline, got %d", id, len(kept))
			}
			must.MatchGJSON(t, kept[0], match.JSONKeyEqual("room_id", p.roomB), match.JSONKeyMissing("unsigned."+client.GjsonEscape(pointerKey)))
		}
		mustBeUnexpanded(t, matching(merged, hasEventID(forged))[0])

		// Entry for entry, it is /messages with the ferry's pointers replaced.
		res := p.bob.MustDo(t, "GET", []string{"_matrix", "client", "v3", "rooms", p.roomB, "messages"},
			client.WithQueries(url.Values{"dir": {"b"}, "limit": {"50"}}))
		plain := must.ParseJSON(t, res.Body).Get("chunk").Array()
		if len(plain) != len(merged) {
			t.Fatalf("/messages has %d events, the merged timeline %d", len(plain), len(merged))
		}
		for i, ev := range plain {
			want := ev.Get("event_id").Str
			if ev.Get("sender").Str == p.bot && ev.Get(pointerPath).Exists() {
				want = ev.Get(pointerPath + ".event_id").Str
			}
			if got := merged[i].Get("event_id").Str; got != want {
				t.Errorf("entry %d: /messages has %s, so want %s in the merged timeline, got %s", i, ev.Get("event_id").Str, want, got)
			}
		}
	})

	t.Run("pages like /messages", func(t *testing.T) {
		all := mustMergedPage(t, p.bob, p.roomB, nil).Get("chunk").Array()
		first := mustMergedPage(t, p.bob, p.roomB, url.Values{"limit": {"2"}})
		second := mustMergedPage(t, p.bob, p.roomB, url.Values{"limit": {"2"}, "from": {first.Get("end").Str}})
		paged := append(first.Get("chunk").Array(), second.Get("chunk").Array()...)
		if len(paged) != 4 || len(all) < 4 {
			t.Fatalf("want two pages of 2 and at least 4 in all; got %d paged, %d in all", len(paged), len(all))
		}
		for i, ev := range paged {
			if ev.Get("event_id").Str != all[i].Get("event_id").Str {
				t.Errorf("paged entry %d is %s, the one-page timeline has %s", i, ev.Get("event_id").Str, all[i].Get("event_id").Str)
			}
		}
	})

	t.Run("a non-member of B is refused", func(t *testing.T) {
		outsider := user(t, d, "hs1", "outsider")
		// Alice may read every original, but not B itself.
		for _, c := range []*client.CSAPI{outsider, p.alice} {
			must.MatchResponse(t, mergedPage(t, c, p.roomB, nil), match.HTTPResponse{
				StatusCode: http.StatusForbidden,
				JSON:       []match.JSON{match.JSONKeyEqual("errcode", "M_FORBIDDEN")},
			})
		}
	})
}

// mergedPage asks, as c, for a page of roomID's merged timeline, newest
// first and up to 50 events unless query says otherwise.
func mergedPage(t *testing.T, c *client.CSAPI, roomID string, query url.Values) *http.Response {
	t.Helper()
	q := url.Values{"dir": {"b"}, "limit": {"50"}}
	for k, v := range query {
		q[k] = v
	}
	return c.Do(t, "GET", api("rooms", roomID, "messages"), client.WithQueries(q))
}

// mustMergedPage is mergedPage's body; the request must succeed.
func mustMergedPage(t *testing.T, c *client.CSAPI, roomID string, query url.Values) gjson.Result {
	t.Helper()
	return gjson.ParseBytes(must.MatchResponse(t, mergedPage(t, c, roomID, query), match.HTTPResponse{StatusCode: http.StatusOK}))
}
