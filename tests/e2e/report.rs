//! Reports over NATS: consistent with the aggregate tables, CSV that parses back, the
//! stored file.

use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};

use crate::aggregation::{config, dataset, publish_dataset};
use crate::helpers::{App, NatsServer, cli, error_code, request, wait_until};

const WAIT: Duration = Duration::from_secs(60);

async fn ask(client: &async_nats::Client, body: Value) -> async_nats::Message {
    request(client, "analytics.query.report", body.to_string()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_agree_with_the_aggregate_tables_in_json_and_csv() {
    let nats = NatsServer::start();
    let reports = tempfile::tempdir().unwrap();
    let app = App::start(
        &nats.url(),
        &format!(
            "{}reports:\n  storage: {}\n",
            config(),
            reports.path().display()
        ),
    );
    let js = nats.jetstream().await;
    let events = dataset(1500);
    publish_dataset(&js, &events).await;
    wait_until(WAIT, "stored", || async { app.event_count().await == 1500 }).await;
    let client = async_nats::connect(nats.url()).await.unwrap();
    let aggregate = client
        .request(
            "analytics.admin.aggregate",
            Bytes::from(r#"{"from":"2026-10-25","to":"2026-11-10"}"#),
        )
        .await
        .unwrap();
    assert!(error_code(&aggregate).is_none());

    let request = json!({"type": "daily", "propertyId": "p_utc",
                         "dateRange": {"start": "2026-10-30", "end": "2026-11-03"}, "format": "json"});
    let reply = ask(&client, request.clone()).await;
    assert_eq!(
        error_code(&reply),
        None,
        "{}",
        String::from_utf8_lossy(&reply.payload)
    );
    let report: Value = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!(report["propertyId"], "p_utc");
    assert_eq!(
        report["period"],
        json!({"start": "2026-10-30", "end": "2026-11-03"})
    );
    assert!(report["generatedAt"].is_string());
    let sections = report["sections"].as_object().unwrap();
    for s in [
        "summary",
        "conversations",
        "responseTimes",
        "staffPerformance",
        "satisfaction",
        "topIntents",
        "channelBreakdown",
        "operations",
    ] {
        assert!(sections.contains_key(s), "{s}");
    }

    // Counts equal the sums of the aggregate rows of the range, read here from the tables.
    let db = app.db().await;
    let sum = |sql: &'static str| db.count(sql);
    let started = sum("SELECT CAST(coalesce(sum(conversations_started), 0) AS BIGINT) FROM agg_conversation_metrics_daily \
                       WHERE property_id = 'p_utc' AND period_date >= '2026-10-30' AND period_date < '2026-11-03'")
    .await;
    let raw_started = events
        .iter()
        .filter(|e| e.property == "p_utc" && e.event_type == "conversation.started")
        .count() as i64;
    assert_eq!(started, raw_started, "the whole dataset lies in the range");
    assert_eq!(sections["summary"]["totalConversations"], json!(started));
    assert_eq!(
        sections["conversations"]["conversationsStarted"],
        json!(started)
    );
    let by_channel: i64 = sections["channelBreakdown"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_i64().unwrap())
        .sum();
    assert_eq!(by_channel, started);
    let messages = sum("SELECT CAST(coalesce(sum(count), 0) AS BIGINT) FROM agg_message_counts_hourly WHERE property_id = 'p_utc' \
                        AND period_start >= '2026-10-30T00:00:00Z' AND period_start < '2026-11-03T00:00:00Z'")
    .await;
    assert_eq!(sections["summary"]["totalMessages"], json!(messages));
    let responses = sum("SELECT CAST(coalesce(sum(count), 0) AS BIGINT) FROM agg_response_times_hourly WHERE property_id = 'p_utc' \
                         AND period_start >= '2026-10-30T00:00:00Z' AND period_start < '2026-11-03T00:00:00Z'")
    .await;
    assert_eq!(sections["responseTimes"]["count"], json!(responses));
    let top_count = sum("SELECT max(n) FROM (SELECT CAST(sum(count) AS BIGINT) AS n FROM agg_intent_distribution_daily \
                         WHERE property_id = 'p_utc' AND period_date >= '2026-10-30' AND period_date < '2026-11-03' GROUP BY intent) AS per_intent")
    .await;
    assert_eq!(sections["topIntents"][0]["count"], json!(top_count));
    assert!(sections["topIntents"].as_array().unwrap().len() <= 5);
    let tasks: i64 = sections["staffPerformance"]
        .as_object()
        .unwrap()
        .values()
        .map(|s| s["tasksCompleted"].as_i64().unwrap())
        .sum();
    let stored_tasks = sum("SELECT CAST(coalesce(sum(tasks_completed), 0) AS BIGINT) FROM agg_staff_performance_daily WHERE property_id = 'p_utc' \
                            AND period_date >= '2026-10-30' AND period_date < '2026-11-03'")
    .await;
    assert_eq!(tasks, stored_tasks);

    // §8's operations: the counts of the range's events (the whole dataset), the rates
    // divided from them, the knowledge gaps ranked from the low-confidence events.
    let ops = &sections["operations"];
    let of_p_utc = || events.iter().filter(|e| e.property == "p_utc");
    let of_type = |t: &str| of_p_utc().filter(|e| e.event_type == t).count() as i64;
    let (sent, delivered, read, failed) = (
        of_type("message.sent"),
        of_type("message.delivered"),
        of_type("message.read"),
        of_type("message.failed"),
    );
    let (created, breached) = (of_type("task.created"), of_type("task.sla_breached"));
    assert!(sent > 0 && delivered > 0 && created > 0, "{ops}");
    for (label, want) in [
        ("sent", json!(sent)),
        ("delivered", json!(delivered)),
        ("read", json!(read)),
        ("failed", json!(failed)),
        ("deliveryRate", json!(delivered as f64 / sent as f64)),
        ("readRate", json!(read as f64 / delivered as f64)),
        ("failureRate", json!(failed as f64 / sent as f64)),
        ("tasksCreated", json!(created)),
        ("tasksCompleted", json!(of_type("task.completed"))),
        ("slaBreached", json!(breached)),
        ("slaBreachRate", json!(breached as f64 / created as f64)),
    ] {
        // JSON parsing may round a fraction's last digit: compare fractions closely.
        let same = match (ops[label].as_f64(), want.as_f64()) {
            (Some(a), Some(b)) if want.is_f64() => (a - b).abs() <= 1e-12,
            _ => ops[label] == want,
        };
        assert!(same, "{label}: {want} vs {ops}");
    }
    let mut low: std::collections::BTreeMap<&str, i64> = Default::default();
    let mut classified: std::collections::BTreeMap<&str, i64> = Default::default();
    for e in of_p_utc() {
        match (e.event_type, crate::aggregation::intent_str(e)) {
            ("intent.confidence_low", Some(i)) => *low.entry(i).or_default() += 1,
            ("intent.classified", Some(i)) => *classified.entry(i).or_default() += 1,
            _ => {}
        }
    }
    let mut gaps: Vec<(&str, i64)> = low.into_iter().collect();
    gaps.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    gaps.truncate(5);
    let want: Vec<Value> = gaps
        .iter()
        .map(|(intent, n)| {
            let c = classified.get(intent).copied().unwrap_or(0);
            json!({"intent": intent, "lowConfidence": n, "classified": c,
                   "lowConfidenceRate": (c > 0).then(|| *n as f64 / c as f64)})
        })
        .collect();
    assert!(!want.is_empty());
    let rounded = |gaps: &Value| -> Value {
        gaps.as_array()
            .unwrap()
            .iter()
            .map(|g| {
                let mut g = g.clone();
                g["lowConfidenceRate"] =
                    json!(g["lowConfidenceRate"].as_f64().map(|r| (r * 1e9).round()));
                g
            })
            .collect()
    };
    assert_eq!(rounded(&ops["knowledgeGaps"]), rounded(&json!(want)));
    // Averages and per-staff figures: the sums of the table rows of the range.
    let online = sum("SELECT CAST(coalesce(sum(online_minutes), 0) AS BIGINT) FROM agg_staff_presence_daily \
                      WHERE property_id = 'p_utc' AND period_date >= '2026-10-30' AND period_date < '2026-11-03'")
    .await;
    let shown: i64 = ops["staffOnlineMinutes"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_i64().unwrap())
        .sum();
    assert!(online > 0);
    assert_eq!(shown, online);
    let (met, firsts) = (
        sum("SELECT CAST(sum(first_response_sla_met) AS BIGINT) FROM agg_conversation_metrics_daily \
             WHERE property_id = 'p_utc' AND period_date >= '2026-10-30' AND period_date < '2026-11-03'")
        .await,
        sum("SELECT CAST(sum(first_responses) AS BIGINT) FROM agg_conversation_metrics_daily \
             WHERE property_id = 'p_utc' AND period_date >= '2026-10-30' AND period_date < '2026-11-03'")
        .await,
    );
    let rate = ops["firstResponseSlaRate"].as_f64().unwrap();
    assert!((rate - met as f64 / firsts as f64).abs() <= 1e-12, "{ops}");
    // The other rates and averages, from the summed columns of the range's rows:
    // rates divide sums, averages weigh each row's value by its count.
    let range =
        "property_id = 'p_utc' AND period_date >= '2026-10-30' AND period_date < '2026-11-03'";
    let rows = |sql: String| {
        let db = &db;
        async move { db.rows(&sql).await }
    };
    let conversations = rows(format!(
        "SELECT CAST(sum(conversations_active) AS BIGINT), CAST(sum(ai_handled_count) AS BIGINT), \
         CAST(sum(ai_resolved_count) AS BIGINT), \
         CAST(sum(avg_first_response_business_ms * first_responses) AS BIGINT), \
         CAST(sum(CASE WHEN avg_first_response_business_ms IS NOT NULL THEN first_responses END) AS BIGINT), \
         CAST(sum(avg_resolution_business_minutes * resolutions_timed) AS BIGINT), \
         CAST(sum(CASE WHEN avg_resolution_business_minutes IS NOT NULL THEN resolutions_timed END) AS BIGINT) \
         FROM agg_conversation_metrics_daily WHERE {range}"
    ))
    .await;
    let c: Vec<i64> = conversations[0]
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    let close = |got: &Value, want: f64| (got.as_f64().unwrap() - want).abs() <= 1e-12;
    assert_eq!(ops["conversationsActive"], json!(c[0]));
    assert!(
        close(&ops["aiInvolvementRate"], c[1] as f64 / c[0] as f64),
        "{ops}"
    );
    assert!(
        close(&ops["automationRate"], c[2] as f64 / c[0] as f64),
        "{ops}"
    );
    assert_eq!(
        ops["avgFirstResponseBusinessMs"],
        json!((c[3] as f64 / c[4] as f64).round() as i64)
    );
    assert_eq!(
        ops["avgResolutionBusinessMinutes"],
        json!((c[5] as f64 / c[6] as f64).round() as i64)
    );
    let tasks = rows(format!(
        "SELECT CAST(sum(avg_completion_minutes * completions_timed) AS BIGINT), \
         CAST(sum(CASE WHEN avg_completion_minutes IS NOT NULL THEN completions_timed END) AS BIGINT) \
         FROM agg_task_performance_daily WHERE {range}"
    ))
    .await;
    let t: Vec<i64> = tasks[0].iter().map(|v| v.as_i64().unwrap()).collect();
    assert_eq!(
        ops["avgCompletionMinutes"],
        json!((t[0] as f64 / t[1] as f64).round() as i64)
    );
    // Each staff member's minutes, member by member.
    let per_staff = rows(format!(
        "SELECT staff_id, CAST(sum(online_minutes) AS BIGINT) FROM agg_staff_presence_daily \
         WHERE {range} GROUP BY staff_id"
    ))
    .await;
    let want: serde_json::Map<String, Value> = per_staff
        .into_iter()
        .map(|r| (r[0].as_str().unwrap().to_owned(), r[1].clone()))
        .collect();
    assert_eq!(ops["staffOnlineMinutes"], Value::Object(want));

    // The stored file is the reply.
    let file = reports
        .path()
        .join("p_utc")
        .join("daily_2026-10-30_2026-11-03.json");
    let stored: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(stored, report);

    // CSV: the same figures, long format, parsed back with a CSV parser.
    let mut csv_request = request.clone();
    csv_request["format"] = json!("csv");
    let reply = ask(&client, csv_request).await;
    assert_eq!(
        reply
            .headers
            .as_ref()
            .and_then(|h| h.get("Content-Type"))
            .map(|v| v.as_str()),
        Some("text/csv")
    );
    let mut reader = csv::Reader::from_reader(reply.payload.as_ref());
    assert_eq!(
        reader.headers().unwrap(),
        vec!["section", "item", "metric", "value"]
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    let find = |section: &str, item: &str, metric: &str| {
        rows.iter()
            .find(|r| &r[0] == section && &r[1] == item && &r[2] == metric)
            .map(|r| r[3].to_owned())
    };
    assert_eq!(
        find("summary", "", "totalConversations"),
        Some(started.to_string())
    );
    assert_eq!(
        find("summary", "", "totalMessages"),
        Some(messages.to_string())
    );
    let top = &sections["topIntents"][0];
    assert_eq!(
        find("top_intents", top["intent"].as_str().unwrap(), "count"),
        Some(top["count"].to_string())
    );
    let staff = sections["staffPerformance"]
        .as_object()
        .unwrap()
        .iter()
        .next()
        .unwrap();
    assert_eq!(
        find("staff_performance", staff.0, "tasksCompleted"),
        Some(staff.1["tasksCompleted"].to_string())
    );
    assert_eq!(find("operations", "", "sent"), Some(sent.to_string()));
    let gap = &ops["knowledgeGaps"][0];
    assert_eq!(
        find(
            "operations",
            gap["intent"].as_str().unwrap(),
            "lowConfidence"
        ),
        Some(gap["lowConfidence"].to_string())
    );
    let (staff_id, minutes) = ops["staffOnlineMinutes"]
        .as_object()
        .unwrap()
        .iter()
        .next()
        .unwrap();
    assert_eq!(
        find("operations", staff_id, "onlineMinutes"),
        Some(minutes.to_string())
    );
    assert!(rows.iter().all(|r| r.len() == 4));
    assert!(
        reports
            .path()
            .join("p_utc")
            .join("daily_2026-10-30_2026-11-03.csv")
            .is_file()
    );

    // Only the sections asked.
    let reply = ask(
        &client,
        json!({"type": "weekly", "propertyId": "p_utc", "sections": ["summary"],
                                    "dateRange": {"start": "2026-10-26", "end": "2026-11-02"}}),
    )
    .await;
    let weekly: Value = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!(
        weekly["sections"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ["summary"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_report_requests_get_a_400_and_no_file_escapes_the_report_folder() {
    let nats = NatsServer::start();
    let reports = tempfile::tempdir().unwrap();
    let _app = App::start(
        &nats.url(),
        &format!("reports:\n  storage: {}/r\n", reports.path().display()),
    );
    let client = async_nats::connect(nats.url()).await.unwrap();
    let ok = json!({"type": "daily", "propertyId": "p", "dateRange": {"start": "2026-11-01", "end": "2026-11-02"}});
    let with = |k: &str, v: Value| {
        let mut b = ok.clone();
        b[k] = v;
        b
    };
    for (body, needle) in [
        (with("type", json!("hourly")), "type"),
        (with("sections", json!(["summary", "gossip"])), "gossip"),
        (with("format", json!("pdf")), "pdf"),
        (
            with(
                "dateRange",
                json!({"start": "2026-11-02", "end": "2026-11-01"}),
            ),
            "must be before",
        ),
        (
            with(
                "dateRange",
                json!({"start": "someday", "end": "2026-11-01"}),
            ),
            "dateRange.start",
        ),
        (with("propertyId", json!("")), "propertyId"),
    ] {
        let reply = ask(&client, body.clone()).await;
        assert_eq!(error_code(&reply), Some("400"), "{body}");
        let parsed: Value = serde_json::from_slice(&reply.payload).unwrap();
        assert!(
            parsed["error"]["message"]
                .as_str()
                .unwrap()
                .contains(needle),
            "{body}: {parsed}"
        );
    }
    let reply = ask(&client, with("propertyId", json!("../../escape"))).await;
    assert_eq!(error_code(&reply), None);
    let dirs: Vec<_> = std::fs::read_dir(reports.path().join("r"))
        .unwrap()
        .map(|d| d.unwrap().path())
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    let name = dirs[0].file_name().unwrap().to_str().unwrap().to_owned();
    assert!(!name.contains('/') && name != ".." && name != ".", "{name}");
    assert!(
        dirs[0].join("daily_2026-11-01_2026-11-02.json").is_file(),
        "written inside the report folder"
    );
    assert!(
        !reports.path().join("escape").exists()
            && !reports.path().parent().unwrap().join("escape").exists()
    );
}

/// A server whose messages may hold 2 KiB, a pipeline with `reports_config` under
/// `reports:` (besides its folder), 800 events aggregated, and the monthly report of
/// p_utc asked for: larger than a message.
struct LargeReport {
    nats: NatsServer,
    reports: tempfile::TempDir,
    app: App,
    reply: async_nats::Message,
}

async fn large_report(reports_config: &str) -> LargeReport {
    let nats = NatsServer::start_with(Some("max_payload: 2048\n"));
    let reports = tempfile::tempdir().unwrap();
    let app = App::start(
        &nats.url(),
        &format!(
            "{}reports:\n  storage: {}\n{reports_config}",
            config(),
            reports.path().display()
        ),
    );
    let js = nats.jetstream().await;
    let events = dataset(800);
    publish_dataset(&js, &events).await;
    wait_until(WAIT, "stored", || async { app.event_count().await == 800 }).await;
    let client = async_nats::connect(nats.url()).await.unwrap();
    client
        .request(
            "analytics.admin.aggregate",
            Bytes::from(r#"{"from":"2026-10-25","to":"2026-11-10"}"#),
        )
        .await
        .unwrap();
    assert_eq!(
        client.server_info().max_payload,
        2048,
        "the test server's limit"
    );
    let reply = ask(
        &client,
        json!({"type": "monthly", "propertyId": "p_utc",
               "dateRange": {"start": "2026-10-01", "end": "2026-12-01"}}),
    )
    .await;
    assert_eq!(error_code(&reply), None);
    LargeReport {
        nats,
        reports,
        app,
        reply,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_larger_than_the_max_payload_is_not_lost_the_reply_says_where_it_is() {
    // The folder and the pipeline stay until the end of the test.
    let large = large_report("").await;
    let note: Value = serde_json::from_slice(&large.reply.payload).unwrap();
    let file = note["file"]
        .as_str()
        .unwrap_or_else(|| panic!("the reply names the file: {note}"));
    assert!(note["bytes"].as_u64().unwrap() > 1536, "{note}");
    let report: Value = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
    assert_eq!(report["propertyId"], "p_utc");
    assert!(
        report["sections"]["staffPerformance"]
            .as_object()
            .is_some_and(|s| !s.is_empty())
    );
}

/// With `reports.object_store`, a report larger than the server's max payload is
/// answered with its object, which a client on another connection fetches whole; the
/// command line fetches it by itself, and `report --fetch` prints it by name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_larger_than_the_max_payload_is_fetched_from_the_object_store() {
    let LargeReport {
        nats,
        reports,
        app,
        reply,
    } = large_report("  object_store: butler_reports\n").await;
    let note: Value = serde_json::from_slice(&reply.payload).unwrap();
    let object = &note["objectStore"];
    let name = "p_utc/monthly_2026-10-01_2026-12-01.json";
    assert_eq!(object["bucket"], "butler_reports", "{note}");
    assert_eq!(object["name"], name, "{note}");
    let file = std::fs::read(reports.path().join(name)).unwrap();
    assert!(file.len() > 2048, "larger than a message: {}", file.len());
    assert_eq!(object["size"].as_u64(), Some(file.len() as u64), "{note}");
    assert!(
        object["digest"]
            .as_str()
            .is_some_and(|d| d.starts_with("SHA-256=")),
        "{note}"
    );

    // Another client, as on another host: the object store checks the digest as the
    // last chunk arrives.
    let other = async_nats::connect(nats.url()).await.unwrap();
    let store = async_nats::jetstream::new(other.clone())
        .get_object_store("butler_reports")
        .await
        .unwrap();
    let info = store.info(name).await.unwrap();
    assert_eq!(info.digest.as_deref(), object["digest"].as_str());
    let fetched = crate::helpers::read_object(&other, "butler_reports", name).await;
    assert!(fetched == file, "the object is the file");

    // The command line follows the reply to the object, and fetches one by name.
    let out = cli(
        &app.config_path(),
        &[
            "report",
            "--type",
            "monthly",
            "--property",
            "p_utc",
            "--from",
            "2026-10-01",
            "--to",
            "2026-12-01",
            "--format",
            "json",
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let written: Value = serde_json::from_slice(&file).unwrap();
    assert_eq!(printed["sections"], written["sections"]);
    // That request wrote the report again, file and object alike.
    let file = std::fs::read(reports.path().join(name)).unwrap();
    let out = cli(&app.config_path(), &["report", "--fetch", name], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stdout == file,
        "`report --fetch` prints the object as it is"
    );
    let out = cli(
        &app.config_path(),
        &["report", "--fetch", "p_utc/none.json"],
        &[],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("p_utc/none.json") && err.contains("butler_reports"),
        "{err}"
    );
}

/// CSV as RFC 4180 has it: an intent or a staff id holding a comma, a quote or a line
/// break comes back whole from a CSV parser.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_reports_quote_commas_quotes_and_line_breaks() {
    let nats = NatsServer::start();
    let app = App::start(&nats.url(), &config());
    let intent = "late, \"very late\"\ncheckout";
    let staff = "staff \"7\", desk";
    let event = |t: &str, id: &str, extra: Value| {
        crate::query::ev_of("p_csv", t, id, "2026-11-02T10:00:00Z", extra)
    };
    let events = vec![
        event(
            "intent.classified",
            "i1",
            json!({"confidence": 0.9, "metadata": {"intent": intent}}),
        ),
        event(
            "intent.classified",
            "i2",
            json!({"confidence": 0.8, "metadata": {"intent": intent}}),
        ),
        event(
            "task.completed",
            "t1",
            json!({"taskId": "t1", "staffId": staff}),
        ),
    ];
    crate::helpers::publish_all(&nats.jetstream().await, events).await;
    wait_until(WAIT, "stored", || async { app.event_count().await == 3 }).await;
    let client = async_nats::connect(nats.url()).await.unwrap();
    let aggregated = request(
        &client,
        "analytics.admin.aggregate",
        r#"{"from":"2026-11-01","to":"2026-11-04"}"#,
    )
    .await;
    assert_eq!(error_code(&aggregated), None);
    let reply = ask(
        &client,
        json!({"type": "daily", "propertyId": "p_csv", "format": "csv",
               "sections": ["top_intents", "staff_performance"],
               "dateRange": {"start": "2026-11-02", "end": "2026-11-03"}}),
    )
    .await;
    assert_eq!(error_code(&reply), None);
    let text = String::from_utf8_lossy(&reply.payload).into_owned();
    assert!(
        text.contains("\"late, \"\"very late\"\"\ncheckout\""),
        "{text}"
    );
    let rows: Vec<csv::StringRecord> = csv::Reader::from_reader(reply.payload.as_ref())
        .records()
        .map(Result::unwrap)
        .collect();
    assert!(
        rows.iter()
            .any(|r| &r[0] == "top_intents" && &r[1] == intent && &r[2] == "count" && &r[3] == "2"),
        "{text}"
    );
    assert!(
        rows.iter().any(|r| &r[0] == "staff_performance"
            && &r[1] == staff
            && &r[2] == "tasksCompleted"
            && &r[3] == "1"),
        "{text}"
    );
}

/// With a bucket configured and NATS not there yet, the pipeline starts all the same
/// and opens the bucket with the first report once NATS answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_bucket_is_opened_once_nats_answers() {
    let mut nats = NatsServer::start();
    nats.kill();
    let mut app = App::prepare(
        &nats.url(),
        "reports:\n  object_store: late_reports\n",
        None,
    );
    app.spawn();
    wait_until(WAIT, "the process up without NATS", || async {
        app.get("/healthz").map(|(s, _)| s) == Some(200)
    })
    .await;
    assert!(app.is_running(), "{}", app.log());
    nats.restart();
    app.wait_ready();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let reply = ask(
        &client,
        json!({"type": "daily", "propertyId": "p_late_bucket",
               "dateRange": {"start": "2026-11-01", "end": "2026-11-02"}}),
    )
    .await;
    assert_eq!(error_code(&reply), None);
    let object = crate::helpers::read_object(
        &client,
        "late_reports",
        "p_late_bucket/daily_2026-11-01_2026-11-02.json",
    )
    .await;
    assert!(object == reply.payload.to_vec(), "the object is the reply");
}
