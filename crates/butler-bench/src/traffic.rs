//! Realistic Butler traffic: every event type in the proportions a hotel concierge
//! produces them, spread over many properties, with time-ordered or random ids.

use bytes::Bytes;
use serde_json::{Map, Value, json};

/// How event ids are made: they decide how the primary-key index is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdStyle {
    /// Ids that sort in publish order (a timestamp prefix then a counter).
    TimeOrdered,
    /// Random UUIDv4: every insert lands somewhere else in the index.
    Uuid4,
}

/// How a property's events are spread over conversations: it decides how the
/// live-state tables (one row per conversation) are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conversations {
    /// A few hundred open per property, numbered in the order they start.
    Numbered,
    /// About 40 open per property, each 10–60 events long, under random ids: a hotel.
    /// Each starts with `conversation.started`, ends with `conversation.resolved` or
    /// `closed`, and completes the task it opened before it ends, so that a long run's
    /// live state holds only what is open.
    HotelLike,
    /// Every event a new conversation under a random id: no locality at all.
    Scattered,
}

/// Open conversations per property in [`Conversations::HotelLike`] traffic.
const OPEN_CONVERSATIONS: usize = 40;

/// The deterministic generator: the same run publishes the same events.
pub type Rng = butler_events::testing::Xorshift;

/// (event type, relative weight) — messages dominate, staff events are rare.
const MIX: [(&str, u64); 25] = [
    ("message.received", 200),
    ("message.sent", 200),
    ("message.delivered", 100),
    ("message.read", 80),
    ("message.failed", 10),
    ("conversation.started", 50),
    ("conversation.escalated", 10),
    ("conversation.resolved", 40),
    ("conversation.closed", 30),
    ("response.ai_generated", 60),
    ("response.staff_sent", 30),
    ("response.time_recorded", 60),
    ("task.created", 20),
    ("task.assigned", 20),
    ("task.completed", 20),
    ("task.sla_breached", 3),
    ("intent.classified", 50),
    ("intent.confidence_low", 10),
    ("intent.action_taken", 20),
    ("satisfaction.survey_sent", 10),
    ("satisfaction.rating_received", 10),
    ("satisfaction.feedback_received", 5),
    ("staff.login", 3),
    ("staff.logout", 3),
    ("staff.status_changed", 5),
];
const CHANNELS: [Option<&str>; 5] = [
    Some("whatsapp"),
    Some("sms"),
    Some("email"),
    Some("webchat"),
    None,
];
const INTENTS: [&str; 8] = [
    "late_checkout",
    "spa_booking",
    "taxi",
    "towels",
    "wifi",
    "breakfast",
    "parking",
    "restaurant",
];

/// One generated event: where it is published and what the bare-insert baseline
/// stores for it.
#[derive(Debug, Clone)]
pub struct Generated {
    /// `<prefix>.<eventType>`.
    pub subject: String,
    /// The JSON body.
    pub payload: Bytes,
    /// The row as stored: id, type, timestamp, property, channel, guest, staff,
    /// conversation, task, value, duration, metadata.
    pub row: Row,
}

/// A raw-table row, as the baselines insert it.
#[derive(Debug, Clone)]
#[allow(missing_docs)]
pub struct Row {
    pub id: String,
    pub event_type: &'static str,
    pub timestamp: String,
    pub property_id: String,
    pub channel: Option<&'static str>,
    pub guest_id: Option<String>,
    pub staff_id: Option<String>,
    pub conversation_id: Option<String>,
    pub task_id: Option<String>,
    pub value: Option<f64>,
    pub duration_ms: Option<i64>,
    pub metadata: Option<String>,
}

/// Makes events for `properties` hotels.
#[derive(Debug, Clone)]
pub struct Traffic {
    rng: Rng,
    properties: u64,
    ids: IdStyle,
    counter: u64,
    total_weight: u64,
    conversations: Conversations,
    /// Per property, its open conversations.
    open: Vec<Vec<OpenConversation>>,
}

/// A hotel-like conversation in progress.
#[derive(Debug, Clone, Default)]
struct OpenConversation {
    id: String,
    /// Events it has left; a new conversation starts in a slot at zero.
    left: u64,
    /// The task it opened and has not completed.
    task: Option<String>,
}

/// The property ids the traffic uses.
pub fn property_id(n: u64) -> String {
    format!("prop_{n:03}")
}

impl Traffic {
    /// A generator; `seed` makes different runs publish different ids.
    pub fn new(seed: u64, properties: u64, ids: IdStyle) -> Traffic {
        Traffic {
            rng: Rng::seeded(seed),
            properties,
            ids,
            counter: 0,
            total_weight: MIX.iter().map(|(_, w)| w).sum(),
            conversations: Conversations::Numbered,
            open: Vec::new(),
        }
    }

    /// The same generator with conversations spread as `conversations` says.
    pub fn with_conversations(mut self, conversations: Conversations) -> Traffic {
        self.conversations = conversations;
        self
    }

    fn random_id(&mut self, kind: &str) -> String {
        format!("{kind}_{:016x}", self.rng.next_u64())
    }

    /// The conversation of the next event of property `p`, the event's type (hotel-like
    /// conversations choose their first and last events) and its task when the
    /// conversation chooses it; `numbered` is its number in
    /// [`Conversations::Numbered`] traffic.
    fn conversation(
        &mut self,
        p: u64,
        numbered: u64,
        picked: &'static str,
    ) -> (String, &'static str, Option<String>) {
        match self.conversations {
            Conversations::Numbered => (format!("conv_{p:03}_{numbered:010}"), picked, None),
            Conversations::Scattered => (self.random_id("conv"), picked, None),
            Conversations::HotelLike => self.hotel_conversation(p as usize, picked),
        }
    }

    fn hotel_conversation(
        &mut self,
        p: usize,
        picked: &'static str,
    ) -> (String, &'static str, Option<String>) {
        if self.open.len() <= p {
            self.open.resize(p + 1, Vec::new());
        }
        if self.open[p].is_empty() {
            self.open[p] = vec![OpenConversation::default(); OPEN_CONVERSATIONS];
        }
        let slot = self.rng.below(OPEN_CONVERSATIONS as u64) as usize;
        let first = self.open[p][slot].left == 0;
        if first {
            let id = self.random_id("conv");
            let left = 10 + self.rng.below(51);
            self.open[p][slot] = OpenConversation {
                id,
                left,
                task: None,
            };
        }
        let ends = self.rng.below(4) == 0;
        let new_task = self.random_id("task");
        let c = &mut self.open[p][slot];
        c.left -= 1;
        let event_type = match picked {
            _ if first => "conversation.started",
            _ if c.left == 0 && ends => "conversation.closed",
            _ if c.left == 0 => "conversation.resolved",
            _ if c.left == 1 && c.task.is_some() => "task.completed",
            "conversation.started" | "conversation.resolved" | "conversation.closed" => {
                "message.received"
            }
            t if t.starts_with("task.") && c.task.is_none() => "task.created",
            "task.created" => "task.assigned",
            t => t,
        };
        if event_type == "task.created" {
            c.task = Some(new_task);
        }
        let task = if event_type.starts_with("task.") {
            c.task.clone()
        } else {
            None
        };
        if event_type == "task.completed" {
            c.task = None;
        }
        (c.id.clone(), event_type, task)
    }

    fn pick_type(&mut self) -> &'static str {
        let mut n = self.rng.below(self.total_weight);
        for (t, w) in MIX {
            if n < w {
                return t;
            }
            n -= w;
        }
        MIX[0].0
    }

    fn id(&mut self, millis: i64) -> String {
        self.counter += 1;
        match self.ids {
            IdStyle::TimeOrdered => format!("evt_{millis:013x}_{:08x}", self.counter),
            IdStyle::Uuid4 => {
                let (a, b) = (self.rng.next_u64(), self.rng.next_u64());
                format!(
                    "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
                    a >> 32,
                    (a >> 16) & 0xffff,
                    a & 0xfff,
                    0x8000 | (b >> 48) & 0x3fff,
                    b & 0xffff_ffff_ffff
                )
            }
        }
    }

    /// One event at `millis` (Unix ms) published under `prefix`.
    pub fn event(&mut self, millis: i64, prefix: &str) -> Generated {
        let picked = self.pick_type();
        let id = self.id(millis);
        let p = self.rng.below(self.properties);
        let property = property_id(p);
        let channel = CHANNELS[self.rng.below(CHANNELS.len() as u64) as usize];
        // Conversations and tasks live for a while: a hotel's events at any moment
        // belong to its few hundred open ones, numbered in the order they started.
        let conv = self.counter / 8 + self.rng.below(300);
        let (conversation_id, event_type, task) = self.conversation(p, conv, picked);
        let timestamp = chrono::DateTime::from_timestamp_millis(millis)
            .unwrap_or_default()
            .format("%Y-%m-%dT%H:%M:%S%.3fZ")
            .to_string();
        let mut row = Row {
            id,
            event_type,
            timestamp,
            property_id: property,
            channel,
            guest_id: Some(format!("guest_{}", conv % 20_000)),
            staff_id: None,
            conversation_id: Some(conversation_id),
            task_id: None,
            value: None,
            duration_ms: None,
            metadata: None,
        };
        let staff = format!("staff_{}", self.rng.below(40));
        let intent = INTENTS[self.rng.below(INTENTS.len() as u64) as usize];
        match event_type {
            "response.time_recorded" => {
                row.duration_ms = Some(500 + self.rng.below(600_000) as i64);
                if self.rng.below(3) == 0 {
                    row.staff_id = Some(staff);
                }
            }
            "conversation.resolved" if self.rng.below(2) == 0 => {
                row.duration_ms = Some(60_000 + self.rng.below(7_200_000) as i64);
            }
            "conversation.escalated" => {
                row.metadata = Some(json!({ "intent": intent }).to_string())
            }
            "satisfaction.rating_received" => {
                row.value = Some(1.0 + self.rng.below(5) as f64);
                if self.rng.below(2) == 0 {
                    row.staff_id = Some(staff);
                }
            }
            "intent.classified" | "intent.confidence_low" | "intent.action_taken" => {
                row.value = Some(self.rng.below(1000) as f64 / 1000.0);
                row.metadata = Some(json!({ "intent": intent, "lang": "en" }).to_string());
            }
            "response.staff_sent" => row.staff_id = Some(staff),
            "task.created" | "task.assigned" | "task.completed" | "task.sla_breached" => {
                let numbered = self.counter / 40 + self.rng.below(100);
                row.task_id = Some(task.unwrap_or_else(|| format!("task_{p:03}_{numbered:010}")));
                if event_type != "task.created" {
                    row.staff_id = Some(staff);
                }
            }
            "staff.login" | "staff.logout" => {
                row.staff_id = Some(staff);
                row.conversation_id = None;
                row.guest_id = None;
            }
            "staff.status_changed" => {
                row.staff_id = Some(staff);
                row.conversation_id = None;
                row.guest_id = None;
                let status = ["available", "busy", "away"][self.rng.below(3) as usize];
                row.metadata = Some(json!({ "status": status }).to_string());
            }
            "message.received" | "message.sent" => {
                row.metadata =
                    Some(json!({ "lang": "en", "length": self.rng.below(400) }).to_string());
            }
            _ => {}
        }
        let payload = payload(&row);
        Generated {
            subject: format!("{prefix}.{event_type}"),
            payload,
            row,
        }
    }

    /// `n` events spread evenly over `[start_ms, start_ms + span_ms)`, in time order.
    pub fn spread(&mut self, n: u64, start_ms: i64, span_ms: i64, prefix: &str) -> Vec<Generated> {
        (0..n)
            .map(|i| {
                let at =
                    start_ms + (i128::from(i) * i128::from(span_ms) / i128::from(n.max(1))) as i64;
                self.event(at, prefix)
            })
            .collect()
    }
}

fn payload(row: &Row) -> Bytes {
    let mut m = Map::new();
    m.insert("id".into(), json!(row.id));
    m.insert("eventType".into(), json!(row.event_type));
    m.insert("timestamp".into(), json!(row.timestamp));
    m.insert("propertyId".into(), json!(row.property_id));
    let mut opt = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            m.insert(k.into(), v);
        }
    };
    opt("channel", row.channel.map(|c| json!(c)));
    opt("guestId", row.guest_id.as_ref().map(|c| json!(c)));
    opt("staffId", row.staff_id.as_ref().map(|c| json!(c)));
    opt(
        "conversationId",
        row.conversation_id.as_ref().map(|c| json!(c)),
    );
    opt("taskId", row.task_id.as_ref().map(|c| json!(c)));
    opt("value", row.value.map(|c| json!(c)));
    opt("durationMs", row.duration_ms.map(|c| json!(c)));
    opt(
        "metadata",
        row.metadata
            .as_ref()
            .and_then(|s| serde_json::from_str::<Value>(s).ok()),
    );
    Bytes::from(Value::Object(m).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_type_appears_and_ids_follow_their_style() {
        let mut t = Traffic::new(1, 20, IdStyle::TimeOrdered);
        let events = t.spread(20_000, 1_764_000_000_000, 86_400_000, "butler.events");
        for (ty, _) in MIX {
            assert!(events.iter().any(|e| e.row.event_type == ty), "{ty}");
        }
        assert!(events.windows(2).all(|w| w[0].row.id < w[1].row.id));
        let mut u = Traffic::new(4, 20, IdStyle::Uuid4);
        let id = u.event(0, "p").row.id;
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        // Neighbouring seeds make different ids.
        assert_ne!(Traffic::new(5, 20, IdStyle::Uuid4).event(0, "p").row.id, id);
    }

    fn distinct_conversations(conversations: Conversations) -> usize {
        let mut t = Traffic::new(1, 20, IdStyle::TimeOrdered).with_conversations(conversations);
        let events = t.spread(20_000, 1_764_000_000_000, 86_400_000, "butler.events");
        let ids: std::collections::HashSet<_> = events
            .iter()
            .filter_map(|e| e.row.conversation_id.clone())
            .collect();
        ids.len()
    }

    #[test]
    fn conversations_are_as_local_as_their_workload_says() {
        // Hotel-like: conversations of 10–60 events (35 on average).
        let hotel = distinct_conversations(Conversations::HotelLike);
        let with_conversation = 20_000 * 95 / 100;
        assert!(
            (with_conversation / 60..=with_conversation / 10 + 800).contains(&hotel),
            "{hotel}"
        );
        // Scattered: each event its own.
        assert!(distinct_conversations(Conversations::Scattered) > with_conversation);
    }

    /// Hotel-like conversations start, complete their task and end, so what stays
    /// open at any moment is about 40 conversations per property, whatever the length.
    #[test]
    fn hotel_like_conversations_finish_what_they_open() {
        let mut t =
            Traffic::new(3, 2, IdStyle::TimeOrdered).with_conversations(Conversations::HotelLike);
        let events = t.spread(60_000, 1_764_000_000_000, 86_400_000, "butler.events");
        let mut conversations: std::collections::HashMap<&str, &str> = Default::default();
        let mut tasks: std::collections::HashMap<&str, bool> = Default::default();
        for e in &events {
            let r = &e.row;
            match (
                r.event_type,
                r.conversation_id.as_deref(),
                r.task_id.as_deref(),
            ) {
                ("conversation.started", Some(c), _) => {
                    assert!(
                        conversations.insert(c, "open").is_none(),
                        "{c} started twice"
                    );
                }
                (ty, Some(c), _)
                    if ty.starts_with("conversation.") && ty != "conversation.escalated" =>
                {
                    assert_eq!(conversations.insert(c, "done"), Some("open"), "{c}");
                }
                (ty, _, Some(task)) if ty.starts_with("task.") => {
                    let completed = ty == "task.completed";
                    assert_eq!(
                        tasks.insert(task, completed).is_none(),
                        ty == "task.created",
                        "{ty} {task}"
                    );
                }
                _ => {}
            }
        }
        let open = conversations.values().filter(|s| **s == "open").count();
        let pending = tasks.values().filter(|done| !**done).count();
        assert!(conversations.len() > 1_500, "{}", conversations.len());
        assert!(open <= 2 * OPEN_CONVERSATIONS, "{open} open");
        assert!(pending <= 2 * OPEN_CONVERSATIONS, "{pending} pending");
    }
}
