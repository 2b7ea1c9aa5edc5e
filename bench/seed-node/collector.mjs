// The seed design's AnalyticsCollector, fed from JetStream: events are buffered,
// flushed at 100 or every 5 s, each flush preparing its statement and inserting in
// one better-sqlite3 transaction. Messages are acked on receipt, as the seed keeps
// no link between a message and its commit.
//
// node collector.mjs NATS_URL STREAM DURABLE DB_PATH TOTAL
import { connect, AckPolicy } from "nats";
import Database from "better-sqlite3";

const [url, stream, durable, dbPath, totalArg] = process.argv.slice(2);
const total = Number(totalArg);

const db = new Database(dbPath);
db.pragma("journal_mode = WAL");

let buffer = [];
let inserted = 0;

function flush() {
  if (buffer.length === 0) return;
  const events = buffer.splice(0);
  const stmt = db.prepare(`
    INSERT INTO analytics_events
    (id, event_type, timestamp, property_id, channel, guest_id, staff_id,
     conversation_id, task_id, value, duration_ms, metadata)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
  `);
  const insertMany = db.transaction((events) => {
    for (const event of events) {
      stmt.run(
        event.id,
        event.eventType,
        event.timestamp.toISOString(),
        event.propertyId,
        event.channel ?? null,
        event.guestId ?? null,
        event.staffId ?? null,
        event.conversationId ?? null,
        event.taskId ?? null,
        event.value ?? null,
        event.durationMs ?? null,
        event.metadata === undefined ? null : JSON.stringify(event.metadata),
      );
    }
  });
  insertMany(events);
  inserted += events.length;
  if (inserted >= total) {
    clearInterval(timer);
    db.close();
    process.exit(0);
  }
}

const timer = setInterval(() => flush(), 5000);

const nc = await connect({ servers: url });
const jsm = await nc.jetstreamManager();
await jsm.consumers.add(stream, {
  durable_name: durable,
  ack_policy: AckPolicy.Explicit,
  max_ack_pending: 20000,
});
const consumer = await nc.jetstream().consumers.get(stream, durable);
const messages = await consumer.consume({ max_messages: 1000 });
console.log("ready");
for await (const m of messages) {
  const event = m.json();
  m.ack();
  event.timestamp = new Date(event.timestamp);
  buffer.push(event);
  if (buffer.length >= 100) flush();
}
