//! `query dashboard`, `query timeseries` and `report`: requests to the running query
//! service over NATS, printed as tables for people or as JSON for scripts.

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::{Context, bail};
use butler_config::Config;
use butler_query::Endpoint;
use bytes::Bytes;
use serde_json::{Value, json};

use crate::cli::{DashboardArgs, ReportArgs, TimeseriesArgs};

/// Sends a request and returns the reply, or the service's error as an error.
async fn request(
    config: &Config,
    subject: &str,
    body: Value,
) -> anyhow::Result<async_nats::Message> {
    let client = crate::nats::connect(&config.nats, "butler-analytics client").await?;
    let reply = tokio::time::timeout(Duration::from_secs(60), client.request(subject.to_owned(), Bytes::from(body.to_string())))
        .await
        .with_context(|| crate::nats::no_answer(format!("no answer on {subject} within 60 s: is `butler-analytics run` up with service.query on?")))?
        .with_context(|| crate::nats::no_answer(format!("no answer on {subject}: is `butler-analytics run` up with service.query on?")))?;
    if let Some(code) = reply
        .headers
        .as_ref()
        .and_then(|h| h.get("Nats-Service-Error-Code"))
    {
        let message = reply
            .headers
            .as_ref()
            .and_then(|h| h.get("Nats-Service-Error"))
            .map_or("", |v| v.as_str());
        bail!("{subject} answered {}: {message}", code.as_str());
    }
    Ok(reply)
}

/// Reads an object from `bucket`, over a connection of its own.
async fn fetch_object(config: &Config, bucket: &str, name: &str) -> anyhow::Result<Vec<u8>> {
    let client = crate::nats::connect(&config.nats, "butler-analytics client").await?;
    let js = async_nats::jetstream::new(client);
    Ok(butler_query::objects::fetch(&js, bucket, name).await?)
}

fn parse(reply: &async_nats::Message) -> anyhow::Result<Value> {
    serde_json::from_slice(&reply.payload).context("the reply is not JSON")
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() && f.fract() != 0.0 => format!("{f:.2}"),
            Some(f) if n.is_f64() => format!("{f:.0}"),
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}

/// Left-aligned columns, the last right-aligned.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    let line = |cells: Vec<&str>, out: &mut String| {
        let last = cells.len() - 1;
        for (i, c) in cells.iter().enumerate() {
            if i == last {
                let _ = write!(out, "{c:>w$}", w = widths[i]);
            } else {
                let _ = write!(out, "{c:<w$}  ", w = widths[i]);
            }
        }
        out.push('\n');
    };
    line(header.to_vec(), &mut out);
    for r in rows {
        line(r.iter().map(String::as_str).collect(), &mut out);
    }
    out
}

/// `query dashboard`.
///
/// # Errors
/// No service, or an error reply.
pub async fn dashboard(config: &Config, args: &DashboardArgs) -> anyhow::Result<()> {
    let mut body = json!({ "propertyId": args.property });
    if let Some(t) = &args.as_of {
        body["asOf"] = json!(t);
    }
    let d = parse(&request(config, Endpoint::Dashboard.subject(), body).await?)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&d)?);
        return Ok(());
    }
    let pct = |v: &Value| format!("{:+.1}%", v.as_f64().unwrap_or(0.0));
    let rows = vec![
        vec![
            "now".into(),
            "active conversations".into(),
            cell(&d["activeConversations"]),
        ],
        vec!["now".into(), "staff online".into(), cell(&d["staffOnline"])],
        vec![
            "now".into(),
            "pending tasks".into(),
            cell(&d["pendingTasks"]),
        ],
        vec![
            "today".into(),
            "conversations resolved".into(),
            cell(&d["today"]["conversationsResolved"]),
        ],
        vec![
            "today".into(),
            "messages received".into(),
            cell(&d["today"]["messagesReceived"]),
        ],
        vec![
            "today".into(),
            "messages sent".into(),
            cell(&d["today"]["messagesSent"]),
        ],
        vec![
            "today".into(),
            "avg response time (ms)".into(),
            cell(&d["today"]["avgResponseTimeMs"]),
        ],
        vec![
            "today".into(),
            "escalation rate".into(),
            cell(&d["today"]["escalationRate"]),
        ],
        vec![
            "vs yesterday".into(),
            "conversations".into(),
            pct(&d["comparison"]["conversationsChange"]),
        ],
        vec![
            "vs yesterday".into(),
            "response time".into(),
            pct(&d["comparison"]["responseTimeChange"]),
        ],
        vec![
            "vs yesterday".into(),
            "satisfaction".into(),
            pct(&d["comparison"]["satisfactionChange"]),
        ],
    ];
    println!(
        "dashboard of {} as of {}\n",
        args.property,
        cell(&d["asOf"])
    );
    print!("{}", table(&["", "figure", "value"], &rows));
    Ok(())
}

/// `query timeseries`.
///
/// # Errors
/// No service, or an error reply.
pub async fn timeseries(config: &Config, args: &TimeseriesArgs) -> anyhow::Result<()> {
    let body = json!({
        "metric": args.metric, "granularity": args.granularity, "startDate": args.from,
        "endDate": args.to, "propertyId": args.property, "dimensions": args.dimensions,
    });
    let reply = parse(&request(config, Endpoint::Timeseries.subject(), body).await?)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&reply)?);
        return Ok(());
    }
    let mut header = vec!["period"];
    header.extend(args.dimensions.iter().map(String::as_str));
    header.push("value");
    let rows: Vec<Vec<String>> = reply["data"]
        .as_array()
        .map(|data| {
            data.iter()
                .map(|p| {
                    let mut row = vec![cell(&p["period"])];
                    row.extend(args.dimensions.iter().map(|d| cell(&p[d])));
                    row.push(cell(&p["value"]));
                    row
                })
                .collect()
        })
        .unwrap_or_default();
    println!(
        "{} for {} ({} rows)\n",
        reply["query"]["metric"].as_str().unwrap_or(&args.metric),
        args.property,
        rows.len()
    );
    print!("{}", table(&header, &rows));
    Ok(())
}

/// `query metrics`.
///
/// # Errors
/// No service, or an error reply.
pub async fn metrics(config: &Config, json: bool) -> anyhow::Result<()> {
    let reply = parse(&request(config, Endpoint::Metrics.subject(), json!({})).await?)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&reply)?);
        return Ok(());
    }
    let mut rows = Vec::new();
    for (granularity, part) in reply.as_object().into_iter().flatten() {
        for m in part["metrics"].as_array().into_iter().flatten() {
            let list = |v: &Value| {
                v.as_array()
                    .map(|a| a.iter().map(cell).collect::<Vec<_>>().join(", "))
                    .unwrap_or_default()
            };
            rows.push(vec![
                granularity.clone(),
                cell(&m["name"]),
                list(&m["dimensions"]),
                cell(&m["aggregation"]),
            ]);
        }
    }
    print!(
        "{}",
        table(
            &["granularity", "metric", "dimensions", "combined by"],
            &rows
        )
    );
    Ok(())
}

/// `report`: asks the query service for a report and prints it; a report larger than
/// a message is fetched from the object store the reply names. With `--fetch`, prints
/// an object of `reports.object_store` as it is, without asking for a report.
///
/// # Errors
/// No answer, an error reply, or an object that cannot be read.
pub async fn report(config: &Config, args: &ReportArgs) -> anyhow::Result<()> {
    if let Some(name) = &args.fetch {
        let Some(bucket) = &config.reports.object_store else {
            bail!(
                "config key `reports.object_store` is not set: there is no bucket to fetch {name} from"
            );
        };
        let body = fetch_object(config, bucket, name).await?;
        std::io::Write::write_all(&mut std::io::stdout(), &body)?;
        return Ok(());
    }
    let (property, from, to) = (
        args.property.as_deref().unwrap_or_default(),
        args.from.as_deref().unwrap_or_default(),
        args.to.as_deref().unwrap_or_default(),
    );
    let format = if args.json {
        "json"
    } else {
        args.format.as_deref().unwrap_or("csv")
    };
    let body = json!({
        "type": args.report_type, "propertyId": property,
        "dateRange": { "start": from, "end": to },
        "sections": args.sections, "format": format,
    });
    let reply = request(config, Endpoint::Report.subject(), body).await?;
    let note = serde_json::from_slice::<Value>(&reply.payload).ok();
    let stored = note.as_ref().and_then(|n| n.get("objectStore"));
    let payload = match stored {
        Some(object) => {
            let (Some(bucket), Some(name)) = (object["bucket"].as_str(), object["name"].as_str())
            else {
                bail!("the reply names no object: {object}");
            };
            Bytes::from(fetch_object(config, bucket, name).await?)
        }
        None => reply.payload.clone(),
    };
    if let Some(file) = note
        .as_ref()
        .and_then(|n| n.get("file"))
        .and_then(Value::as_str)
    {
        println!(
            "{}\nfile: {file}",
            note.as_ref()
                .and_then(|n| n["message"].as_str())
                .unwrap_or("the report is in a file")
        );
        return Ok(());
    }
    if args.json {
        let report: Value = serde_json::from_slice(&payload).context("the report is not JSON")?;
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    if args.format.is_some() {
        print!("{}", String::from_utf8_lossy(&payload));
        return Ok(());
    }
    let mut reader = csv::Reader::from_reader(payload.as_ref());
    let rows: Vec<Vec<String>> = reader
        .records()
        .map(|r| {
            r.map(|r| {
                r.iter()
                    .map(|c| {
                        if c.is_empty() {
                            "-".to_owned()
                        } else {
                            c.to_owned()
                        }
                    })
                    .collect()
            })
        })
        .collect::<Result<_, _>>()
        .context("the CSV reply does not parse")?;
    println!(
        "{} report of {property} for [{from}, {to})\n",
        args.report_type
    );
    print!("{}", table(&["section", "item", "metric", "value"], &rows));
    Ok(())
}
