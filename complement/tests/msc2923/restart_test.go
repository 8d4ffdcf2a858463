package msc2923_test

import (
	"testing"

	"synapse-room-connect/complement/deployer"
)

// Statuses are derived from room state; the module caches them in its table
// and rebuilds that from state at start-up (docs/msc2923.md §2). A restart
// must keep every status as it was.
func TestMSC2923RestartKeepsEveryStatus(t *testing.T) {
	d := deployer.Deploy(t, 1)
	defer d.Destroy(t)
	bot := ferryBot(t, d, "hs1")
	alice, roomA := admin(t, d, "hs1", "alice", nil)
	bob, roomB := admin(t, d, "hs1", "bob", nil)
	roomC := alice.MustCreateRoom(t, map[string]any{"room_version": "12", "name": "C"})
	roomD := bob.MustCreateRoom(t, map[string]any{"room_version": "12", "name": "D"})
	roomE := alice.MustCreateRoom(t, map[string]any{"room_version": "12", "name": "E"})
	roomF := bob.MustCreateRoom(t, map[string]any{"room_version": "12", "name": "F"})

	// A asks B; C and D connect; E and F connect, then F revokes.
	posA, posC, posE := since(t, alice), since(t, alice), since(t, alice)
	requestConnection(t, alice, roomA, roomB)
	requestConnection(t, alice, roomC, roomD)
	requestConnection(t, bob, roomD, roomC)
	requestConnection(t, alice, roomE, roomF)
	requestConnection(t, bob, roomF, roomE)
	waitForNotice(t, alice, posA, roomA, bot, "Requested a connection")
	waitForNotice(t, alice, posC, roomC, bot, "now connected")
	waitForNotice(t, alice, posE, roomE, bot, "now connected")
	posE = since(t, alice)
	bob.MustDo(t, "DELETE", api("rooms", roomF, "connections", roomE))
	waitForNotice(t, alice, posE, roomE, bot, "has ended")

	views := []struct {
		name        string
		room, other string
		status      string
		viewedByBob bool
	}{
		{"A about B", roomA, roomB, statusRequested, false},
		{"B about A", roomB, roomA, statusIncoming, true},
		{"C about D", roomC, roomD, statusActive, false},
		{"D about C", roomD, roomC, statusActive, true},
		{"E about F", roomE, roomF, statusRevoked, false},
		{"F about E", roomF, roomE, statusRevoked, true},
	}
	check := func(when string) {
		t.Helper()
		for _, v := range views {
			c := alice
			if v.viewedByBob {
				c = bob
			}
			t.Logf("%s: %s should be %s", when, v.name, v.status)
			mustHaveStatus(t, c, v.room, v.other, v.status)
		}
	}
	check("before the restart")
	if err := d.Restart(t); err != nil {
		t.Fatalf("restart: %s", err)
	}
	check("after the restart")
}
