//! The NATS connection, from the `nats` config section.

use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context;
use async_nats::{ConnectOptions, Event, ServerAddr};
use butler_config::NatsConfig;

/// The last error the server sent this process, such as a permissions violation: a
/// request that then times out says why instead of blaming the network.
static LAST_SERVER_ERROR: Mutex<Option<String>> = Mutex::new(None);

/// Why a request to NATS got no answer: the server's last complaint, or `otherwise`.
pub fn no_answer(otherwise: String) -> String {
    match LAST_SERVER_ERROR.lock().ok().and_then(|e| e.clone()) {
        Some(complaint) => format!("{otherwise}; the server said: {complaint}"),
        None => otherwise,
    }
}

/// Connects with the configured credentials and TLS, to any of the servers of
/// `nats.url` (and those a cluster announces), moving to another when one goes away.
/// The first connection is retried in the background, so the pipeline starts (and
/// `/readyz` says "not ready") while NATS is unreachable; later disconnects reconnect
/// forever.
///
/// # Errors
/// An unreadable credentials file or a malformed URL.
pub async fn connect(config: &NatsConfig, name: &str) -> anyhow::Result<async_nats::Client> {
    options(config)
        .await?
        .name(name)
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(5))
        .event_callback(|event| async move {
            match event {
                Event::Connected => tracing::info!("connected to nats"),
                Event::Disconnected => tracing::warn!("disconnected from nats; reconnecting"),
                Event::ServerError(err) => {
                    if let Ok(mut last) = LAST_SERVER_ERROR.lock() {
                        *last = Some(err.to_string());
                    }
                    tracing::warn!(error = %err, "nats server error");
                }
                Event::ClientError(err) => tracing::warn!(error = %err, "nats client error"),
                other => tracing::debug!(event = %other, "nats event"),
            }
        })
        .connect(servers(config)?)
        .await
        .context("config key `nats.url`: cannot connect")
}

/// The configured credentials and TLS, for a connection of any kind.
///
/// # Errors
/// An unreadable credentials file.
pub async fn options(config: &NatsConfig) -> anyhow::Result<ConnectOptions> {
    let mut options = ConnectOptions::new();
    if let Some(token) = &config.token {
        options = options.token(token.expose().to_owned());
    }
    if let Some(user) = &config.user {
        let password = config
            .password
            .as_ref()
            .map(|p| p.expose().to_owned())
            .unwrap_or_default();
        options = options.user_and_password(user.clone(), password);
    }
    if let Some(seed) = &config.nkey_seed {
        options = options.nkey(seed.expose().to_owned());
    }
    if let Some(creds) = &config.creds_file {
        options = options.credentials_file(creds).await.with_context(|| {
            format!(
                "config key `nats.creds_file`: cannot read {}",
                creds.display()
            )
        })?;
    }
    if let Some(tls) = &config.tls {
        options = options.require_tls(tls.required);
        if let Some(ca) = &tls.ca_file {
            options = options.add_root_certificates(ca.clone());
        }
        if let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) {
            options = options.add_client_certificate(cert.clone(), key.clone());
        }
    }
    Ok(options)
}

/// The servers of `nats.url`.
///
/// # Errors
/// One that is not a NATS server URL, named without its credentials.
pub fn servers(config: &NatsConfig) -> anyhow::Result<Vec<ServerAddr>> {
    config
        .servers()
        .into_iter()
        .map(|s| {
            s.parse::<ServerAddr>().with_context(|| {
                format!(
                    "config key `nats.url`: {:?} is not a NATS server URL",
                    s.split('@').next_back().unwrap_or(s)
                )
            })
        })
        .collect()
}
