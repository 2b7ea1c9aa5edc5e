#!/usr/bin/env python3
"""Loads synthetic Butler events straight into a butler-analytics database (created
first with `butler-analytics migrate`), bypassing NATS, to time aggregation at scale.

    scripts/synthetic-events.py DB --events 1000000 --start 2026-11-24T00:00:00Z --hours 24

Events are spread evenly over the hours, across all the types the roll-ups read, and
every hour they land in is marked dirty the way ingest marks it, so the aggregation
jobs pick them up on their next run (`butler-analytics aggregate --job … --due`).
"""
import argparse
import datetime as dt
import json
import random
import sqlite3

TYPES = [
    "message.received", "message.sent", "conversation.started", "conversation.resolved",
    "conversation.escalated", "response.time_recorded", "response.ai_generated",
    "response.staff_sent", "task.created", "task.completed", "intent.classified",
    "intent.action_taken", "satisfaction.survey_sent", "satisfaction.rating_received",
]
CHANNELS = ["whatsapp", "sms", "email", "webchat", None]
INTENTS = ["late_checkout", "spa", "taxi", "towels", "wifi", "breakfast", "parking", "restaurant"]


TALLIED = ("'conversation.started', 'conversation.resolved', 'conversation.escalated', "
           "'message.received', 'message.sent', 'response.time_recorded', 'task.created', "
           "'satisfaction.survey_sent', 'satisfaction.rating_received'")
TALLY_HOUR = (
    "INSERT INTO event_tallies_hour SELECT property_id, substr(timestamp, 1, 13), event_type, "
    "CASE WHEN event_type IN ('satisfaction.survey_sent', 'satisfaction.rating_received') "
    "THEN coalesce(channel, 'unknown') ELSE '*' END, count(*), total(value), count(value), "
    "coalesce(sum(duration_ms), 0), count(duration_ms), "
    + ", ".join(f"count(*) FILTER (WHERE event_type = 'satisfaction.rating_received' AND value = {k})"
                for k in range(1, 6))
    + f" FROM analytics_events WHERE property_id = ? AND timestamp >= ? AND timestamp < ? "
      f"AND event_type IN ({TALLIED}) GROUP BY 1, 2, 3, 4")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("db")
    p.add_argument("--events", type=int, default=1_000_000)
    p.add_argument("--start", default="2026-11-24T00:00:00Z")
    p.add_argument("--hours", type=int, default=24)
    p.add_argument("--properties", type=int, default=1)
    p.add_argument("--prefix", default="syn")
    p.add_argument("--seed", type=int, default=7)
    a = p.parse_args()
    rnd = random.Random(a.seed)
    start = dt.datetime.fromisoformat(a.start.replace("Z", "+00:00"))
    span_ms = a.hours * 3_600_000
    con = sqlite3.connect(a.db)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=OFF")
    step = span_ms / a.events
    rows = []
    hours = set()
    for i in range(a.events):
        t = start + dt.timedelta(milliseconds=int(i * step))
        ts = t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"
        et = TYPES[rnd.randrange(len(TYPES))]
        prop = f"prop_{rnd.randrange(a.properties):04d}"
        conv = f"conv_{rnd.randrange(a.events // 20 + 1)}"
        staff = f"staff_{rnd.randrange(40)}" if rnd.random() < 0.6 else None
        value = duration = meta = None
        if et == "response.time_recorded":
            duration = rnd.randrange(200, 300_000)
        elif et == "conversation.resolved" and rnd.random() < 0.5:
            duration = rnd.randrange(60_000, 7_200_000)
        elif et == "satisfaction.rating_received":
            value = float(rnd.randrange(1, 6))
        elif et == "intent.classified":
            value = rnd.random()
        if et.startswith("intent.") or (et == "conversation.escalated" and rnd.random() < 0.5):
            meta = json.dumps({"intent": INTENTS[rnd.randrange(len(INTENTS))]})
        rows.append((f"{a.prefix}-{i:010d}", et, ts, prop, CHANNELS[rnd.randrange(5)], None, staff,
                     conv, None, value, duration, meta))
        hours.add((prop, ts[:13] + ":00:00Z"))
        if len(rows) == 50_000:
            con.executemany("INSERT OR IGNORE INTO analytics_events (id, event_type, timestamp, property_id, "
                            "channel, guest_id, staff_id, conversation_id, task_id, value, duration_ms, metadata) "
                            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", rows)
            con.commit()
            rows.clear()
    if rows:
        con.executemany("INSERT OR IGNORE INTO analytics_events (id, event_type, timestamp, property_id, "
                        "channel, guest_id, staff_id, conversation_id, task_id, value, duration_ms, metadata) "
                        "VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", rows)
    seq = con.execute("UPDATE ingest_change_counter SET last_seq = last_seq + 1 RETURNING last_seq").fetchone()[0]
    con.executemany("INSERT INTO agg_dirty_hours (property_id, hour_start, change_seq) VALUES (?,?,?) "
                    "ON CONFLICT (property_id, hour_start) DO UPDATE SET change_seq = excluded.change_seq",
                    [(p, h, seq) for p, h in hours])
    # Recount the running tallies of every loaded hour, as ingest would have kept them.
    for p, h in hours:
        lo, hi = h[:13], h[:13] + ":99"
        con.execute("DELETE FROM event_tallies_hour WHERE property_id = ? AND hour = ?", (p, lo))
        con.execute(TALLY_HOUR, (p, lo, hi))
    con.commit()
    total = con.execute("SELECT count(*) FROM analytics_events").fetchone()[0]
    print(f"loaded {a.events} events over {len(hours)} property-hours; table now holds {total}")


if __name__ == "__main__":
    main()
