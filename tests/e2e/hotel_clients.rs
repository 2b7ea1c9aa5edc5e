//! A hotel's developer (CONTRACT §7): under the shipped `deploy/nats/permissions.conf`
//! itself — passwords from the server's environment, hotel B added the way README
//! tells an operator to — each standard client asks for its dashboard, follows each
//! new value on its live subject, and is refused, with a permissions violation rather
//! than a timeout, everything that would show it another hotel: async-nats here,
//! nats-py and nats.js through README's own examples and a probe script.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::Value;

use crate::helpers::{App, NatsServer, publish_all, request, wait_until};
use crate::security::refused_to;
use crate::tenants::{received, zones};

/// README's async-nats example, compiled and run as it is shown.
#[path = "../../examples/hotel-dashboard/dashboard.rs"]
mod example;

const WAIT: Duration = Duration::from_secs(60);

/// Each user's password, as the server's environment gives it.
const PASSWORDS: [(&str, &str); 6] = [
    ("ANALYTICS_PASSWORD", "pw-analytics"),
    ("PRODUCER_PASSWORD", "pw-producer"),
    ("READER_PASSWORD", "pw-reader"),
    ("OPERATOR_PASSWORD", "pw-operator"),
    ("HOTEL_A_PASSWORD", "pw-hotel-a"),
    ("HOTEL_B_PASSWORD", "pw-hotel-b"),
];

fn password(user: &str) -> &'static str {
    let variable = format!("{}_PASSWORD", user.to_uppercase());
    PASSWORDS
        .iter()
        .find(|(v, _)| *v == variable)
        .map(|(_, p)| *p)
        .unwrap()
}

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The shipped permissions file with hotel B added as README says: the `hotel_a`
/// block copied, `hotel_a` replaced by `hotel_b` and `HOTEL_A` by `HOTEL_B`.
pub(crate) fn shipped_permissions() -> String {
    let conf = std::fs::read_to_string(repository().join("deploy/nats/permissions.conf")).unwrap();
    let start = conf
        .find("    {\n      # A hotel's own client: the template.")
        .expect("the hotel template in permissions.conf");
    let end = start + conf[start..].find("\n    }\n").unwrap() + "\n    }\n".len();
    let hotel_b = conf[start..end]
        .replace("hotel_a", "hotel_b")
        .replace("HOTEL_A", "HOTEL_B");
    format!("{}{hotel_b}{}", &conf[..end], &conf[end..])
}

/// nats-server under the shipped permissions.
pub(crate) fn shipped_server() -> NatsServer {
    NatsServer::start_with_env(&shipped_permissions(), &PASSWORDS)
}

/// The pipeline as the `analytics` user, otherwise in its default configuration.
pub(crate) fn pipeline(nats: &NatsServer, extra: &str) -> App {
    App::start(
        &nats.url(),
        &format!(
            "nats:\n  user: analytics\n  password: {}\n{extra}{}",
            password("analytics"),
            zones()
        ),
    )
}

/// JetStream as the `producer` user, which publishes events.
pub(crate) async fn producer(nats: &NatsServer) -> async_nats::jetstream::Context {
    async_nats::jetstream::new(connect(nats, "producer").await.0)
}

/// A client of `user`, with the inbox prefix its permissions name for a hotel, and
/// the server's complaints to it (permission violations).
async fn connect(
    nats: &NatsServer,
    user: &str,
) -> (
    async_nats::Client,
    tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let mut options =
        async_nats::ConnectOptions::with_user_and_password(user.into(), password(user).into())
            .event_callback(move |event| {
                let tx = tx.clone();
                async move {
                    if let async_nats::Event::ServerError(e) = event {
                        let _ = tx.send(e.to_string());
                    }
                }
            });
    if user.starts_with("hotel_") {
        options = options.custom_inbox_prefix(format!("_INBOX_{user}"));
    }
    (options.connect(nats.url()).await.unwrap(), rx)
}

/// What README's async-nats example shows of one hotel's dashboard.
struct Follower {
    /// Each value, and when the example showed it.
    values: tokio::sync::mpsc::UnboundedReceiver<(Instant, Value)>,
    /// Every `today.messagesReceived` the hotel's own figures take in the test: any
    /// other is another property's.
    own: &'static [i64],
    last: i64,
}

impl Follower {
    /// README's async-nats example following `hotel`'s dashboard.
    fn start(nats: &NatsServer, hotel: &'static str, own: &'static [i64]) -> Follower {
        let (tx, values) = tokio::sync::mpsc::unbounded_channel();
        let url = nats.url();
        tokio::spawn(async move {
            let shown = example::follow_dashboard(&url, hotel, password(hotel), |value| {
                let _ = tx.send((Instant::now(), value));
            })
            .await;
            if let Err(e) = shown {
                panic!("{hotel}: {e}");
            }
        });
        Follower {
            values,
            own,
            last: 0,
        }
    }

    /// The next value whose `today.messagesReceived` is `n`; panics after [`WAIT`],
    /// on another property's figures, or on figures going back.
    async fn value_with(&mut self, n: i64) -> Value {
        self.value_with_timed(n).await.0
    }

    /// [`Follower::value_with`], and when the example showed it.
    async fn value_with_timed(&mut self, n: i64) -> (Value, Instant) {
        let deadline = Instant::now() + WAIT;
        loop {
            let (at, value) = tokio::time::timeout_at(deadline.into(), self.values.recv())
                .await
                .unwrap_or_else(|_| panic!("no value with {n} messages"))
                .expect("the example stopped");
            let received = value["today"]["messagesReceived"].as_i64().unwrap();
            assert!(
                self.own.contains(&received) && received >= self.last,
                "{value} after {} messages",
                self.last
            );
            self.last = received;
            if received == n {
                return (value, at);
            }
        }
    }
}

/// `property`'s dashboard as of `as_of`, asked on its scoped subject (a reply for
/// another `asOf`, such as a cached one of a moment ago, cannot answer it).
async fn dashboard(client: &async_nats::Client, property: &str, as_of: &str) -> Value {
    let body = serde_json::json!({ "asOf": as_of }).to_string();
    let reply = request(
        client,
        &format!("analytics.query.dashboard.{property}"),
        body,
    )
    .await;
    serde_json::from_slice(&reply.payload).unwrap()
}

/// `value` with every number a float, for comparing JSON printed by different
/// languages.
fn as_floats(value: &Value) -> Value {
    match value {
        Value::Number(n) => serde_json::json!(n.as_f64()),
        Value::Array(items) => items.iter().map(as_floats).collect(),
        Value::Object(fields) => fields
            .iter()
            .map(|(k, v)| (k.clone(), as_floats(v)))
            .collect(),
        other => other.clone(),
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The moment `n` events are seen stored, waited for: no earlier than their commit.
async fn committed_at(app: &App, n: i64) -> Instant {
    wait_until(WAIT, "the events committed", || async {
        app.event_count().await == n
    })
    .await;
    Instant::now()
}

/// Every live dashboard write took at most `seconds` from the commit, as the
/// pipeline's lag histogram says; returns how many there were.
fn writes_within(app: &App, seconds: &str) -> f64 {
    let count = app.metric("butler_analytics_live_dashboard_lag_seconds_count");
    let within = app.metric(&format!(
        "butler_analytics_live_dashboard_lag_seconds_bucket{{le=\"{seconds}\"}}"
    ));
    assert_eq!(
        within, count,
        "live dashboard writes later than {seconds} s"
    );
    count
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_async_nats_a_hotel_follows_its_live_subject_and_sees_no_other_hotel() {
    let nats = shipped_server();
    let app = pipeline(&nats, "");
    let producer = producer(&nats).await;
    let (hotel_a, mut refusals) = connect(&nats, "hotel_a").await;
    let (reader, _) = connect(&nats, "reader").await;
    let mut every_live = reader
        .subscribe("analytics.live.dashboard.>")
        .await
        .unwrap();
    let mut a_live = Follower::start(&nats, "hotel_a", &[0, 2, 5, 6]);
    let mut b_live = Follower::start(&nats, "hotel_b", &[0, 3, 4]);
    // The current figures first: none yet.
    a_live.value_with(0).await;
    b_live.value_with(0).await;

    let mut events = received("hotel_a", "a", 2);
    events.extend(received("hotel_b", "b", 3));
    publish_all(&producer, events).await;
    let first = a_live.value_with(2).await;
    b_live.value_with(3).await;
    // Each commit's new figures arrive as they are written.
    publish_all(&producer, received("hotel_a", "a-more", 3)).await;
    let committed = committed_at(&app, 8).await;
    let (second, arrived) = a_live.value_with_timed(5).await;
    assert!(
        arrived <= committed + Duration::from_secs(2),
        "the live value came {:?} after the commit",
        arrived - committed
    );
    assert!(
        second["asOf"].as_str() > first["asOf"].as_str(),
        "{first} then {second}"
    );
    // A request on its scoped subject as of the same instant: the same figures.
    let asked = dashboard(&hotel_a, "hotel_a", second["asOf"].as_str().unwrap()).await;
    assert_eq!(asked, second);
    // Its scoped subject answers for itself only: a body naming hotel B is refused.
    let other = request(
        &hotel_a,
        "analytics.query.dashboard.hotel_a",
        r#"{"propertyId":"hotel_b"}"#,
    )
    .await;
    let other: Value = serde_json::from_slice(&other.payload).unwrap();
    assert_eq!(other["error"]["code"], "bad_request", "{other}");
    // A plain request gets the newest value, not the reply cached when the example
    // first asked (no messages then).
    let plain = request(&hotel_a, "analytics.query.dashboard.hotel_a", "{}").await;
    let plain: Value = serde_json::from_slice(&plain.payload).unwrap();
    assert_eq!(plain["today"], second["today"], "{plain}");
    assert!(plain["asOf"].as_str() >= second["asOf"].as_str(), "{plain}");
    assert!(writes_within(&app, "2") >= 3.0);

    // A trusted reader follows every property, and reads and watches the bucket.
    let mut seen = std::collections::BTreeSet::new();
    let mut hotel_a_values = Vec::new();
    while seen.len() < 2 || !hotel_a_values.contains(&second) {
        let message = tokio::time::timeout(WAIT, every_live.next())
            .await
            .unwrap()
            .unwrap();
        seen.insert(message.subject.to_string());
        if message.subject.as_str() == "analytics.live.dashboard.hotel_a" {
            hotel_a_values.push(serde_json::from_slice::<Value>(&message.payload).unwrap());
        }
    }
    assert_eq!(
        seen,
        [
            "analytics.live.dashboard.hotel_a",
            "analytics.live.dashboard.hotel_b"
        ]
        .map(String::from)
        .into()
    );
    let bucket = async_nats::jetstream::new(reader.clone())
        .get_key_value("butler_dashboard")
        .await
        .unwrap();
    let stored: Value =
        serde_json::from_slice(&bucket.get("hotel_a").await.unwrap().unwrap()).unwrap();
    assert_eq!(stored["today"]["messagesReceived"], 5);
    // What the bucket holds is what the live subject carried (or, if a refresh
    // wrote a newer value meanwhile, carries next).
    while !hotel_a_values.contains(&stored) {
        let message = tokio::time::timeout(WAIT, every_live.next())
            .await
            .unwrap_or_else(|_| panic!("{stored} not among {hotel_a_values:?}"))
            .unwrap();
        if message.subject.as_str() == "analytics.live.dashboard.hotel_a" {
            hotel_a_values.push(serde_json::from_slice::<Value>(&message.payload).unwrap());
        }
    }
    let mut watch = bucket.watch_with_history("hotel_b").await.unwrap();
    let watched = tokio::time::timeout(WAIT, watch.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let watched: Value = serde_json::from_slice(&watched.value).unwrap();
    assert_eq!(watched["today"]["messagesReceived"], 3);

    // Hotel A is refused hotel B's subjects, the unscoped and admin ones, and every
    // way into the bucket, whose stream info would list every property's id.
    for subject in [
        "analytics.query.dashboard.hotel_b",
        "analytics.query.timeseries.hotel_b",
        "analytics.query.report.hotel_b",
        "analytics.query.dashboard",
        "analytics.admin.status",
        "$JS.API.INFO",
        "$JS.API.STREAM.INFO.KV_butler_dashboard",
        "$JS.API.STREAM.MSG.GET.KV_butler_dashboard",
        "$JS.API.DIRECT.GET.KV_butler_dashboard.$KV.butler_dashboard.hotel_a",
        "$JS.API.DIRECT.GET.KV_butler_dashboard.$KV.butler_dashboard.hotel_b",
        "$JS.API.CONSUMER.CREATE.KV_butler_dashboard",
        "$JS.API.CONSUMER.CREATE.KV_butler_dashboard.w.$KV.butler_dashboard.hotel_a",
        "$KV.butler_dashboard.hotel_b",
    ] {
        hotel_a
            .publish(subject, Bytes::from_static(b"{}"))
            .await
            .unwrap();
        refused_to(&mut refusals, subject).await;
    }
    for subject in [
        "analytics.live.dashboard.hotel_b",
        "analytics.live.dashboard.>",
        "$KV.butler_dashboard.>",
        "_INBOX.>",
    ] {
        let _ = hotel_a.subscribe(subject).await.unwrap();
        refused_to(&mut refusals, subject).await;
    }
    // Hotel A's follower only ever saw its own figures: B's never reach it.
    publish_all(&producer, received("hotel_b", "b-more", 1)).await;
    b_live.value_with(4).await;
    publish_all(&producer, received("hotel_a", "a-last", 1)).await;
    a_live.value_with(6).await;
}

/// The NATS clients of other languages: `target/hotel-clients` as
/// `scripts/hotel-clients.sh` installs it (which `make test` runs), installed now when
/// missing.
fn hotel_clients() -> PathBuf {
    let out = Command::new(repository().join("scripts/hotel-clients.sh"))
        .current_dir(repository())
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(out.status.success(), "scripts/hotel-clients.sh failed");
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// A client script of another language.
#[derive(Clone, Copy, Debug)]
enum Language {
    Python,
    JavaScript,
}

impl Language {
    /// The command running `script` (relative to the repository) as `user`.
    fn command(self, clients: &Path, script: &str, nats: &NatsServer, user: &str) -> Command {
        let mut command = match self {
            Language::Python => Command::new(clients.join("py/bin/python")),
            Language::JavaScript => {
                let mut node = Command::new("node");
                node.env("NODE_PATH", clients.join("js/node_modules"));
                node
            }
        };
        let script = match self {
            Language::Python => format!("{script}.py"),
            Language::JavaScript => format!("{script}.js"),
        };
        command
            .arg(repository().join(script))
            .env("NATS_URL", nats.url())
            .env("NATS_USER", user)
            .env("NATS_PASSWORD", password(user))
            .env(
                "NATS_INBOX_PREFIX",
                if user.starts_with("hotel_") {
                    format!("_INBOX_{user}")
                } else {
                    "_INBOX".to_owned()
                },
            )
            .env("PROPERTY_ID", user)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        command
    }
}

/// A running client script and the JSON lines it prints.
struct Script {
    child: Child,
    /// Each line, and when it was read.
    lines: mpsc::Receiver<(Instant, Value)>,
}

impl Script {
    fn spawn(mut command: Command) -> Script {
        let mut child = command.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
                if tx.send((Instant::now(), value)).is_err() {
                    return;
                }
            }
        });
        Script { child, lines }
    }

    /// The next line that `wanted` accepts; panics after [`WAIT`] or at the end.
    fn next(&self, what: &str, wanted: impl Fn(&Value) -> bool) -> Value {
        self.next_timed(what, wanted).0
    }

    /// [`Script::next`], and when the script printed it.
    fn next_timed(&self, what: &str, wanted: impl Fn(&Value) -> bool) -> (Value, Instant) {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok((at, line)) if wanted(&line) => return (line, at),
                Ok(_) => {}
                Err(e) => panic!("{what}: {e}"),
            }
        }
    }

    /// Every line, until the script exits.
    fn all(mut self) -> Vec<Value> {
        let lines = self.lines.iter().map(|(_, line)| line).collect();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "{status}");
        lines
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// README's example of `language` follows hotel A's dashboard, and the probe finds
/// each thing hotel A must not see refused as a permissions violation.
async fn hotel_client_of_another_language(language: Language) {
    let clients = hotel_clients();
    let nats = shipped_server();
    let app = pipeline(&nats, "");
    let producer = producer(&nats).await;
    let (reader, _) = connect(&nats, "reader").await;
    let mut events = received("hotel_a", "a", 2);
    events.extend(received("hotel_b", "b", 3));
    publish_all(&producer, events).await;
    wait_until(WAIT, "hotel A's two messages", || async {
        dashboard(&reader, "hotel_a", &now()).await["today"]["messagesReceived"] == 2
    })
    .await;

    // What the pipeline publishes on hotel A's live subject, as a trusted reader hears it.
    let mut published = reader
        .subscribe("analytics.live.dashboard.hotel_a")
        .await
        .unwrap();

    let example = Script::spawn(language.command(
        &clients,
        "examples/hotel-dashboard/dashboard",
        &nats,
        "hotel_a",
    ));
    // Every line is hotel A's: two messages, then five.
    let own = |line: &Value, key: &str| {
        let n = line[key]["today"]["messagesReceived"].as_i64();
        assert!(matches!(n, Some(2 | 5)), "{line}");
        n
    };
    let current = example.next("the current dashboard", |line| {
        line.get("current").is_some() && own(line, "current") == Some(2)
    });
    // Hotel B's next figures are published while the example listens: they reach
    // the reader, never hotel A's example (whose every line `own` checks).
    let mut b_published = reader
        .subscribe("analytics.live.dashboard.hotel_b")
        .await
        .unwrap();
    publish_all(&producer, received("hotel_b", "b-more", 1)).await;
    loop {
        let message = tokio::time::timeout(WAIT, b_published.next())
            .await
            .expect("hotel B's new value")
            .unwrap();
        let value: Value = serde_json::from_slice(&message.payload).unwrap();
        if value["today"]["messagesReceived"] == 4 {
            break;
        }
    }
    publish_all(&producer, received("hotel_a", "a-more", 3)).await;
    let committed = committed_at(&app, 9).await;
    let (live, arrived) = example.next_timed("a live value with five messages", |line| {
        line.get("live").is_some() && own(line, "live") == Some(5)
    });
    assert!(
        arrived <= committed + Duration::from_secs(2),
        "{language:?}: the live value came {:?} after the commit",
        arrived - committed
    );
    assert!(live["live"]["asOf"].as_str() > current["current"]["asOf"].as_str());
    // It is the value published on the live subject.
    loop {
        let message = tokio::time::timeout(WAIT, published.next())
            .await
            .expect("the live value on hotel A's subject")
            .unwrap();
        let value: Value = serde_json::from_slice(&message.payload).unwrap();
        if value["asOf"] == live["live"]["asOf"] {
            // JavaScript prints 0.0 as 0: compare numbers as numbers.
            assert_eq!(as_floats(&value), as_floats(&live["live"]));
            break;
        }
    }
    drop(example);

    // Hotel A: its own subjects answer; everything that would show another hotel is
    // refused with a permissions violation, not a timeout.
    let allowed = [
        "request:analytics.query.timeseries.hotel_a",
        "request:analytics.query.report.hotel_a",
        "subscribe:analytics.live.dashboard.hotel_a",
    ];
    let forbidden = [
        "request:analytics.query.dashboard.hotel_b",
        "request:analytics.query.timeseries.hotel_b",
        "request:analytics.query.report.hotel_b",
        "request:analytics.query.dashboard",
        "request:analytics.admin.status",
        "request:$JS.API.STREAM.INFO.KV_butler_dashboard",
        "request:$JS.API.STREAM.MSG.GET.KV_butler_dashboard",
        "request:$JS.API.DIRECT.GET.KV_butler_dashboard.$KV.butler_dashboard.hotel_b",
        "request:$KV.butler_dashboard.hotel_b",
        "subscribe:analytics.live.dashboard.hotel_b",
        "subscribe:analytics.live.dashboard.>",
        "subscribe:$KV.butler_dashboard.>",
        "subscribe:_INBOX.>",
        "kv:butler_dashboard/hotel_b",
    ];
    let mut probe = language.command(&clients, "tests/clients/probe", &nats, "hotel_a");
    probe.args(allowed).args(forbidden);
    let outcomes = Script::spawn(probe).all();
    assert_eq!(
        outcomes.len(),
        allowed.len() + forbidden.len(),
        "{outcomes:?}"
    );
    for (attempt, outcome) in allowed.iter().zip(&outcomes) {
        assert_eq!(outcome["try"], *attempt);
        assert_eq!(outcome["outcome"], "answered", "{language:?}: {outcome}");
    }
    let series: Value = serde_json::from_str(outcomes[0]["detail"].as_str().unwrap()).unwrap();
    assert_eq!(
        series["error"]["code"], "bad_request",
        "asked without a metric: {series}"
    );
    let report: Value = serde_json::from_str(outcomes[1]["detail"].as_str().unwrap()).unwrap();
    assert_eq!(
        report["error"]["code"], "bad_request",
        "asked without a type: {report}"
    );
    for (attempt, outcome) in forbidden.iter().zip(&outcomes[allowed.len()..]) {
        assert_eq!(outcome["try"], *attempt);
        assert_eq!(
            outcome["outcome"], "permissions violation",
            "{language:?}: {outcome}"
        );
        let detail = outcome["detail"].as_str().unwrap().to_lowercase();
        let refused = match attempt.split_once(':').unwrap() {
            // Opening the bucket asks the JetStream API first.
            ("kv", _) => "$js.api.".to_owned(),
            (_, subject) => subject.to_lowercase(),
        };
        assert!(
            detail.contains("permissions violation") && detail.contains(&refused),
            "{language:?}: {outcome}"
        );
    }

    // The trusted reader reads and watches the bucket, and follows every property.
    let mut probe = language.command(&clients, "tests/clients/probe", &nats, "reader");
    probe.args([
        "kv:butler_dashboard/hotel_a",
        "watch:butler_dashboard/hotel_b",
        "subscribe:analytics.live.dashboard.>",
    ]);
    let outcomes = Script::spawn(probe).all();
    assert_eq!(outcomes.len(), 3, "{outcomes:?}");
    for outcome in &outcomes {
        assert_eq!(outcome["outcome"], "answered", "{language:?}: {outcome}");
    }
    for (outcome, messages) in outcomes.iter().zip([5, 4]) {
        let value: Value = serde_json::from_str(outcome["detail"].as_str().unwrap()).unwrap();
        assert_eq!(value["today"]["messagesReceived"], messages, "{outcome}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_nats_py_a_hotel_follows_its_live_subject_and_sees_no_other_hotel() {
    hotel_client_of_another_language(Language::Python).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_nats_js_a_hotel_follows_its_live_subject_and_sees_no_other_hotel() {
    hotel_client_of_another_language(Language::JavaScript).await;
}

/// README shows the examples as they are tested.
#[test]
fn readme_shows_the_tested_examples() {
    let readme = std::fs::read_to_string(repository().join("README.md")).unwrap();
    for example in [
        "examples/hotel-dashboard/dashboard.py",
        "examples/hotel-dashboard/dashboard.js",
        "examples/hotel-dashboard/dashboard.rs",
    ] {
        let code = std::fs::read_to_string(repository().join(example)).unwrap();
        assert!(
            readme.contains(code.trim()),
            "README lacks {example} as it is"
        );
    }
}

/// README's first event, published with `butler-analytics publish` as the kit's
/// `producer`; as a user without the grant, the error says what the server refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_producer_publishes_with_the_cli_and_a_refusal_is_named() {
    let nats = shipped_server();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, format!("nats:\n  url: {}\n", nats.url())).unwrap();
    let event = r#"{"id":"evt_hello_1","propertyId":"prop_lisbon_01","channel":"whatsapp","conversationId":"conv_1"}"#;
    let as_user = |user: &'static str| {
        [
            ("BUTLER_ANALYTICS__NATS__USER", user),
            ("BUTLER_ANALYTICS__NATS__PASSWORD", password(user)),
        ]
    };
    // The stream is the pipeline's to create.
    let _app = pipeline(&nats, "");
    let out = crate::helpers::cli(
        &config,
        &["publish", "message.received", event],
        &as_user("producer"),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success()
            && stdout.contains("butler.events.message.received\tstream BUTLER_EVENTS seq 1"),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = crate::helpers::cli(
        &config,
        &["publish", "message.received", event],
        &as_user("reader"),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("the server said") && stderr.contains("Permissions Violation"),
        "{stderr}"
    );
}
