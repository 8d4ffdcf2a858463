// What matrix-js-sdk (the SDK Element is built on) makes of a room: one
// snapshot after its first sync, printed as JSON for tests/test_js_sdk_client.py.
//
//   node timeline.mjs BASE_URL USER_ID ACCESS_TOKEN ROOM_ID [TIMELINE_LIMIT]
//
// Synapse answers a repeated initial sync with the same filter from a cache
// for a while: a caller that takes several snapshots gives each its own
// TIMELINE_LIMIT, so each is a fresh view.
// For each message in the room's live timeline: its sender, the sender's
// name as the SDK displays it (from the room's member events), its body, and
// the reactions the SDK aggregates on it (key -> how many distinct senders).
import * as sdk from "matrix-js-sdk";
import { logger } from "matrix-js-sdk/lib/logger.js";

const [baseUrl, userId, accessToken, roomId, limitArg] = process.argv.slice(2);
const timelineLimit = Number.parseInt(limitArg ?? "100", 10);
if (!roomId) {
    console.error("usage: node timeline.mjs BASE_URL USER_ID ACCESS_TOKEN ROOM_ID");
    process.exit(2);
}
logger.setLevel("error");

const client = sdk.createClient({ baseUrl, userId, accessToken });
const prepared = new Promise((resolve, reject) => {
    client.on(sdk.ClientEvent.Sync, (state, _prev, data) => {
        if (state === "PREPARED") resolve();
        if (state === "ERROR") reject(data?.error ?? new Error("sync failed"));
    });
});
const timeout = setTimeout(() => {
    console.error("no first sync within 30 s");
    process.exit(1);
}, 30_000);

await client.startClient({ initialSyncLimit: timelineLimit, lazyLoadMembers: false });
await prepared;
clearTimeout(timeout);

const room = client.getRoom(roomId);
if (room === null) {
    console.error(`not in ${roomId}`);
    process.exit(1);
}
const messages = [];
for (const event of room.getLiveTimeline().getEvents()) {
    if (event.getType() !== "m.room.message" || event.isRedacted()) continue;
    const reactions = {};
    const annotations = room.relations.getChildEventsForEvent(
        event.getId(),
        "m.annotation",
        "m.reaction",
    );
    for (const [key, events] of annotations?.getSortedAnnotationsByKey() ?? []) {
        const live = [...events].filter((e) => !e.isRedacted());
        const senders = new Set(live.map((e) => e.getSender()));
        if (senders.size > 0) reactions[key] = senders.size;
    }
    messages.push({
        event_id: event.getId(),
        sender: event.getSender(),
        sender_name: event.sender?.name ?? null,
        body: event.getContent().body ?? null,
        reactions,
    });
}
client.stopClient();
process.stdout.write(JSON.stringify({ room_name: room.name, messages }) + "\n");
process.exit(0);
