//! Secure NATS: token, user/password with least-privilege permissions, TLS with a
//! custom CA and client certificates. The right credentials are accepted, wrong ones
//! refused, and no secret reaches the logs.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;

use crate::helpers::{App, NatsServer, message_event, publish_all, wait_until};

const WAIT: Duration = Duration::from_secs(60);

/// Waits until the server has refused the pipeline, and checks it is alive but not
/// ready, for NATS.
async fn refused(app: &mut App) {
    wait_until(WAIT, "the endpoint", || async {
        app.get("/healthz").map(|(s, _)| s) == Some(200)
    })
    .await;
    wait_until(WAIT, "the server's refusal logged", || async {
        let log = app.log();
        log.contains("nats server error") || log.contains("nats client error")
    })
    .await;
    let (status, body) = app.get("/readyz").unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("nats"), "{body}");
    assert!(app.is_running());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_authentication() {
    let nats = NatsServer::start_with(Some("authorization { token: \"tok-s3cret-42\" }\n"));
    let app = App::start(&nats.url(), "nats:\n  token: tok-s3cret-42\n");
    let js = nats
        .jetstream_as(async_nats::ConnectOptions::with_token(
            "tok-s3cret-42".into(),
        ))
        .await;
    publish_all(
        &js,
        vec![(
            "butler.events.message.received".into(),
            message_event("tok-1"),
        )],
    )
    .await;
    wait_until(WAIT, "stored", || async { app.event_count().await == 1 }).await;
    assert!(
        !app.log().contains("tok-s3cret-42"),
        "the token is never logged"
    );

    let mut wrong = App::prepare(&nats.url(), "nats:\n  token: not-the-token\n", None);
    wrong.spawn();
    refused(&mut wrong).await;
    assert!(!wrong.log().contains("not-the-token"));
}

/// `deploy/nats/permissions.conf` as shipped, each user's password set: the pipeline's
/// to `password`, the others' to `<user>-pw`.
pub(crate) fn permissions_conf(password: &str) -> String {
    let conf = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/nats/permissions.conf"),
    )
    .unwrap();
    let mut conf = conf.replace("$ANALYTICS_PASSWORD", &format!("\"{password}\""));
    for user in ["producer", "reader", "operator", "hotel_a"] {
        let variable = format!("${}_PASSWORD", user.to_uppercase());
        assert!(conf.contains(&variable), "{user}");
        conf = conf.replace(&variable, &format!("\"{user}-pw\""));
    }
    conf
}

/// A client of `user` (password `<user>-pw`) and the server's complaints to it, such as
/// permission violations.
async fn party(
    url: &str,
    user: &str,
) -> (
    async_nats::Client,
    tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    party_with(url, user, async_nats::ConnectOptions::new()).await
}

/// [`party`] with more connect options.
async fn party_with(
    url: &str,
    user: &str,
    options: async_nats::ConnectOptions,
) -> (
    async_nats::Client,
    tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let client = options
        .user_and_password(user.into(), format!("{user}-pw"))
        .event_callback(move |event| {
            let tx = tx.clone();
            async move {
                if let async_nats::Event::ServerError(e) = event {
                    let _ = tx.send(e.to_string());
                }
            }
        })
        .connect(url)
        .await
        .unwrap();
    (client, rx)
}

/// Waits for the server to refuse a publish to `subject`.
pub(crate) async fn refused_to(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
    subject: &str,
) {
    let seen = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(e) = rx.recv().await {
            if e.contains("Permissions Violation") && e.contains(subject) {
                return;
            }
        }
    })
    .await;
    assert!(seen.is_ok(), "no refusal of {subject}");
}

/// A request that the service answers within the wait.
async fn answered(client: &async_nats::Client, subject: &str, body: &'static str) -> Vec<u8> {
    tokio::time::timeout(
        WAIT,
        client.request(subject.to_owned(), Bytes::from_static(body.as_bytes())),
    )
    .await
    .unwrap_or_else(|_| panic!("{subject}: no answer"))
    .unwrap_or_else(|e| panic!("{subject}: {e}"))
    .payload
    .to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_party_is_allowed_its_part_and_refused_the_rest() {
    let nats = NatsServer::start_with(Some(&permissions_conf("pw-analytics-7")));
    let reports = tempfile::tempdir().unwrap();
    let app = App::start(
        &nats.url(),
        &format!(
            "nats:\n  user: analytics\n  password: pw-analytics-7\nreports:\n  storage: {}\n  object_store: butler_reports\n",
            reports.path().display()
        ),
    );

    let (producer, mut producer_errors) = party(&nats.url(), "producer").await;
    let js = async_nats::jetstream::new(producer.clone());
    js.publish(
        "butler.events.message.received",
        Bytes::from(message_event("party-1")),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    wait_until(WAIT, "the producer's event stored", || async {
        app.event_count().await == 1
    })
    .await;
    for subject in [
        "analytics.query.dashboard",
        "$JS.API.STREAM.DELETE.BUTLER_EVENTS",
    ] {
        producer
            .publish(subject, Bytes::from_static(b"{}"))
            .await
            .unwrap();
        refused_to(&mut producer_errors, subject).await;
    }

    let (reader, mut reader_errors) = party(&nats.url(), "reader").await;
    let reply = answered(
        &reader,
        "analytics.query.dashboard",
        r#"{"propertyId":"prop_test"}"#,
    )
    .await;
    assert!(String::from_utf8_lossy(&reply).contains("messagesReceived"));
    answered(&reader, "$SRV.PING.butler-analytics", "").await;
    for subject in ["analytics.admin.status", "butler.events.message.received"] {
        reader
            .publish(subject, Bytes::from_static(b"{}"))
            .await
            .unwrap();
        refused_to(&mut reader_errors, subject).await;
    }

    let (operator, mut operator_errors) = party(&nats.url(), "operator").await;
    let status = answered(&operator, "analytics.admin.status", "{}").await;
    assert!(String::from_utf8_lossy(&status).contains("jobs"));
    answered(&operator, "analytics.query.metrics", "{}").await;
    // A report the pipeline put in the object store, read back by the operator.
    let report = answered(
        &operator,
        "analytics.query.report",
        r#"{"type":"daily","propertyId":"prop_test","dateRange":{"start":"2026-11-01","end":"2026-11-02"}}"#,
    )
    .await;
    let object = crate::helpers::read_object(
        &operator,
        "butler_reports",
        "prop_test/daily_2026-11-01_2026-11-02.json",
    )
    .await;
    assert_eq!(object, report);
    operator
        .publish("butler.events.message.received", Bytes::from_static(b"{}"))
        .await
        .unwrap();
    refused_to(&mut operator_errors, "butler.events.message.received").await;
    // Reports are the operator's to read, not a dashboard's.
    reader
        .publish(
            "$JS.API.STREAM.INFO.OBJ_butler_reports",
            Bytes::from_static(b""),
        )
        .await
        .unwrap();
    refused_to(&mut reader_errors, "$JS.API.STREAM.INFO.OBJ_butler_reports").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_password_with_least_privilege_permissions_is_enough() {
    let conf = permissions_conf("pw-analytics-9");
    let nats = NatsServer::start_with(Some(&conf));
    let app = App::start(
        &nats.url(),
        "nats:\n  user: analytics\n  password: pw-analytics-9\n",
    );
    let (producer, _) = party(&nats.url(), "producer").await;
    publish_all(
        &async_nats::jetstream::new(producer),
        vec![(
            "butler.events.message.received".into(),
            message_event("perm-1"),
        )],
    )
    .await;
    wait_until(WAIT, "stored under least privilege", || async {
        app.event_count().await == 1
    })
    .await;
    // The consumer's state, as the pipeline's own user may read it.
    let js = nats
        .jetstream_as(async_nats::ConnectOptions::with_user_and_password(
            "analytics".into(),
            "pw-analytics-9".into(),
        ))
        .await;
    wait_until(WAIT, "acked under least privilege", || async {
        crate::helpers::consumer_info(&js).await.num_ack_pending == 0
    })
    .await;

    let dashboard =
        async_nats::ConnectOptions::with_user_and_password("reader".into(), "reader-pw".into())
            .connect(nats.url())
            .await
            .unwrap();
    let reply = tokio::time::timeout(
        WAIT,
        dashboard.request(
            "analytics.query.dashboard",
            Bytes::from_static(br#"{"propertyId":"prop_test"}"#),
        ),
    )
    .await
    .unwrap()
    .unwrap();
    let d: serde_json::Value = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!(d["today"]["messagesReceived"], 1, "{d}");
    let ping = tokio::time::timeout(
        WAIT,
        dashboard.request("$SRV.PING.butler-analytics", Bytes::new()),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(String::from_utf8_lossy(&ping.payload).contains("butler-analytics"));
    assert!(
        !app.log().contains("pw-analytics-9"),
        "the password is never logged"
    );

    // Least privilege: the pipeline's user cannot publish events.
    let analytics = async_nats::ConnectOptions::with_user_and_password(
        "analytics".into(),
        "pw-analytics-9".into(),
    )
    .connect(nats.url())
    .await
    .unwrap();
    let forged = async_nats::jetstream::new(analytics)
        .publish(
            "butler.events.message.received",
            Bytes::from(message_event("forged")),
        )
        .await;
    let refused_publish = match forged {
        Err(_) => true,
        Ok(ack) => tokio::time::timeout(Duration::from_secs(5), ack)
            .await
            .map_or(true, |r| r.is_err()),
    };
    assert!(
        refused_publish,
        "the pipeline's user may not publish events"
    );

    let mut wrong = App::prepare(
        &nats.url(),
        "nats:\n  user: analytics\n  password: wrong-pw\n",
        None,
    );
    wrong.spawn();
    refused(&mut wrong).await;
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, all from it.
fn certificates(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=test-ca",
            "-keyout",
            "ca-key.pem",
            "-out",
            "ca.pem",
        ],
    );
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    for who in ["server", "client"] {
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                &format!("/CN={who}"),
                "-keyout",
                &format!("{who}-key.pem"),
                "-out",
                &format!("{who}.csr"),
            ],
        );
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{who}.csr"),
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca-key.pem",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                &format!("{who}.ext"),
                "-out",
                &format!("{who}.pem"),
            ],
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_custom_ca_and_a_client_certificate() {
    let certs = tempfile::tempdir().unwrap();
    let d = certs.path();
    certificates(d);
    let nats = NatsServer::start_with(Some(&format!(
        "tls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n  ca_file: \"{}\"\n  verify: true\n}}\n",
        d.join("server.pem").display(),
        d.join("server-key.pem").display(),
        d.join("ca.pem").display()
    )));
    let tls = format!(
        "nats:\n  tls:\n    required: true\n    ca_file: {}\n    cert_file: {}\n    key_file: {}\n",
        d.join("ca.pem").display(),
        d.join("client.pem").display(),
        d.join("client-key.pem").display()
    );
    let app = App::start(&nats.url(), &tls);
    let publisher = async_nats::ConnectOptions::new()
        .require_tls(true)
        .add_root_certificates(d.join("ca.pem"))
        .add_client_certificate(d.join("client.pem"), d.join("client-key.pem"));
    let js = nats.jetstream_as(publisher).await;
    publish_all(
        &js,
        vec![(
            "butler.events.message.received".into(),
            message_event("tls-1"),
        )],
    )
    .await;
    wait_until(WAIT, "stored over TLS", || async {
        app.event_count().await == 1
    })
    .await;

    // Without a client certificate the server refuses the connection.
    let no_client_cert = format!(
        "nats:\n  tls:\n    required: true\n    ca_file: {}\n",
        d.join("ca.pem").display()
    );
    let mut refused_app = App::prepare(&nats.url(), &no_client_cert, None);
    refused_app.spawn();
    refused(&mut refused_app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nkey_authentication() {
    let user = nkeys::KeyPair::new_user();
    let seed = user.seed().unwrap();
    let nats = NatsServer::start_with(Some(&format!(
        "authorization {{ users = [ {{ nkey: \"{}\" }} ] }}\n",
        user.public_key()
    )));
    let app = App::start(&nats.url(), &format!("nats:\n  nkey_seed: {seed}\n"));
    let js = nats
        .jetstream_as(async_nats::ConnectOptions::with_nkey(seed.clone()))
        .await;
    publish_all(
        &js,
        vec![(
            "butler.events.message.received".into(),
            message_event("nkey-1"),
        )],
    )
    .await;
    wait_until(WAIT, "stored", || async { app.event_count().await == 1 }).await;
    assert!(!app.log().contains(&seed), "the seed is never logged");

    let stranger = nkeys::KeyPair::new_user().seed().unwrap();
    let mut wrong = App::prepare(
        &nats.url(),
        &format!("nats:\n  nkey_seed: {stranger}\n"),
        None,
    );
    wrong.spawn();
    refused(&mut wrong).await;
}

/// A NATS JWT (`ed25519-nkey`), signed by `issuer`.
fn jwt(issuer: &nkeys::KeyPair, subject: &str, name: &str, nats: serde_json::Value) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = b64.encode(br#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let claims = serde_json::json!({
        "jti": format!("{:X}", chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()),
        "iat": chrono::Utc::now().timestamp(),
        "iss": issuer.public_key(),
        "name": name,
        "sub": subject,
        "nats": nats,
    });
    let body = format!("{header}.{}", b64.encode(claims.to_string()));
    let signature = issuer.sign(body.as_bytes()).unwrap();
    format!("{body}.{}", b64.encode(signature))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creds_file_authentication() {
    let operator = nkeys::KeyPair::new_operator();
    let account = nkeys::KeyPair::new_account();
    let user = nkeys::KeyPair::new_user();
    let unlimited = serde_json::json!({
        "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1, "wildcards": true,
        "conn": -1, "leaf": -1, "mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1,
    });
    let operator_jwt = jwt(
        &operator,
        &operator.public_key(),
        "test-operator",
        serde_json::json!({"type": "operator", "version": 2}),
    );
    let account_jwt = jwt(
        &operator,
        &account.public_key(),
        "analytics",
        serde_json::json!({"limits": unlimited, "type": "account", "version": 2}),
    );
    let user_jwt = jwt(
        &account,
        &user.public_key(),
        "analytics",
        serde_json::json!({
            "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1, "type": "user", "version": 2,
        }),
    );
    // JetStream in operator mode needs a system account.
    let system = nkeys::KeyPair::new_account();
    let system_jwt = jwt(
        &operator,
        &system.public_key(),
        "SYS",
        serde_json::json!({"type": "account", "version": 2}),
    );
    let nats = NatsServer::start_with(Some(&format!(
        "operator: \"{operator_jwt}\"\nsystem_account: {sys}\nresolver: MEMORY\nresolver_preload: {{\n  {acc}: \"{account_jwt}\"\n  {sys}: \"{system_jwt}\"\n}}\n",
        acc = account.public_key(),
        sys = system.public_key(),
    )));
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("analytics.creds");
    let seed = user.seed().unwrap();
    std::fs::write(
        &creds,
        format!(
            "-----BEGIN NATS USER JWT-----\n{user_jwt}\n------END NATS USER JWT------\n\n\
             ************************* IMPORTANT *************************\n\
             NKEY Seed printed below can be used to sign and prove identity.\n\n\
             -----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n"
        ),
    )
    .unwrap();
    let app = App::start(
        &nats.url(),
        &format!("nats:\n  creds_file: {}\n", creds.display()),
    );
    let publisher = async_nats::ConnectOptions::with_credentials_file(&creds)
        .await
        .unwrap();
    let js = nats.jetstream_as(publisher).await;
    publish_all(
        &js,
        vec![(
            "butler.events.message.received".into(),
            message_event("creds-1"),
        )],
    )
    .await;
    wait_until(WAIT, "stored", || async { app.event_count().await == 1 }).await;
    assert!(!app.log().contains(&seed), "the seed is never logged");

    // A user the account did not sign is refused.
    let stranger = nkeys::KeyPair::new_user();
    let forged = jwt(
        &nkeys::KeyPair::new_account(),
        &stranger.public_key(),
        "x",
        serde_json::json!({"type": "user", "version": 2}),
    );
    let forged_creds = dir.path().join("forged.creds");
    std::fs::write(
        &forged_creds,
        format!(
            "-----BEGIN NATS USER JWT-----\n{forged}\n------END NATS USER JWT------\n\n\
             -----BEGIN USER NKEY SEED-----\n{}\n------END USER NKEY SEED------\n",
            stranger.seed().unwrap()
        ),
    )
    .unwrap();
    let mut wrong = App::prepare(
        &nats.url(),
        &format!("nats:\n  creds_file: {}\n", forged_creds.display()),
        None,
    );
    wrong.spawn();
    refused(&mut wrong).await;
}

/// A pipeline that may not create or bind its stream is not ready, and says why:
/// readiness means events can be consumed, not only that NATS answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_refused_its_stream_is_not_ready_and_says_why() {
    let nats = NatsServer::start_with(Some(&permissions_conf("pw-analytics-3")));
    let mut app = App::prepare(
        &nats.url(),
        "nats:\n  user: analytics\n  password: pw-analytics-3\n  stream: NOT_PERMITTED\n",
        None,
    );
    app.spawn();
    wait_until(WAIT, "the refusal logged", || async {
        app.log()
            .contains("cannot subscribe to the durable consumer")
    })
    .await;
    let (status, body) = app.get("/readyz").expect("the endpoint answers");
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("ingest: not subscribed to the durable consumer"),
        "{body}"
    );
    assert!(!body.contains("nats: not connected"), "{body}");
    assert_eq!(
        app.metric("butler_analytics_ingest_consuming"),
        0.0,
        "the gauge says it too"
    );
}
