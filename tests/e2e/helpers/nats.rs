//! A nats-server child process with JetStream, on its own port and store directory.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use bytes::Bytes;

/// A nats-server with JetStream, killed (and its store removed) on drop. Restarting
/// keeps the port and the store, like a server coming back after a crash.
pub struct NatsServer {
    child: Option<Child>,
    /// The client port.
    pub port: u16,
    store: tempfile::TempDir,
    /// Extra server configuration (nats-server config syntax), if any.
    config: Option<String>,
}

fn server_bin() -> PathBuf {
    if let Ok(bin) = std::env::var("NATS_SERVER_BIN") {
        return bin.into();
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join("nats-server"))
        .find(|p| p.is_file());
    on_path.unwrap_or_else(|| "/usr/sbin/nats-server".into())
}

impl NatsServer {
    /// Starts a server on a free port and waits until it accepts connections.
    pub fn start() -> NatsServer {
        NatsServer::start_with(None)
    }

    /// Starts a server on a given port.
    pub fn on_port(port: u16) -> NatsServer {
        let mut server = NatsServer {
            child: None,
            port,
            store: tempfile::tempdir().unwrap(),
            config: None,
        };
        server.spawn();
        server
    }

    /// Starts a server with extra configuration lines, e.g. `max_payload: 4096`.
    pub fn start_with(config: Option<&str>) -> NatsServer {
        let mut server = NatsServer {
            child: None,
            port: super::free_port(),
            store: tempfile::tempdir().unwrap(),
            config: config.map(str::to_owned),
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let bin = server_bin();
        let mut cmd = Command::new(&bin);
        if let Some(extra) = &self.config {
            let path = self.store.path().join("server.conf");
            std::fs::write(&path, extra).unwrap();
            cmd.arg("-c").arg(path);
        }
        let child = cmd
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(self.store.path())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.store.path().join("nats-server.log")).unwrap())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {} (set NATS_SERVER_BIN): {e}", bin.display())
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(15);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nats-server did not listen on {}:\n{}",
                self.port,
                std::fs::read_to_string(self.store.path().join("nats-server.log"))
                    .unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The client URL.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL) and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again with the same port and store.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// A JetStream context, with the events stream created as the pipeline creates it.
    pub async fn jetstream(&self) -> jetstream::Context {
        self.jetstream_as(async_nats::ConnectOptions::new()).await
    }

    /// [`NatsServer::jetstream`], connecting with `options` (credentials, TLS).
    pub async fn jetstream_as(&self, options: async_nats::ConnectOptions) -> jetstream::Context {
        let client = options.connect(self.url()).await.unwrap();
        let js = jetstream::new(client);
        js.get_or_create_stream(jetstream::stream::Config {
            name: "BUTLER_EVENTS".into(),
            subjects: vec!["butler.events.>".into()],
            storage: jetstream::stream::StorageType::File,
            ..Default::default()
        })
        .await
        .unwrap();
        js
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Publishes every message and waits until the stream has stored each one; returns
/// their stream sequences in order.
pub async fn publish_all(js: &jetstream::Context, messages: Vec<(String, Vec<u8>)>) -> Vec<u64> {
    let mut sequences = Vec::with_capacity(messages.len());
    let mut messages = messages.into_iter().peekable();
    while messages.peek().is_some() {
        let mut acks = Vec::with_capacity(1000);
        for (subject, payload) in messages.by_ref().take(1000) {
            acks.push(js.publish(subject, Bytes::from(payload)).await.unwrap());
        }
        for ack in acks {
            sequences.push(ack.await.unwrap().sequence);
        }
    }
    sequences
}

/// The durable consumer's state as the server sees it.
pub async fn consumer_info(js: &jetstream::Context) -> jetstream::consumer::Info {
    let stream = js.get_stream("BUTLER_EVENTS").await.unwrap();
    stream.consumer_info("analytics-pipeline").await.unwrap()
}

/// The durable consumer's state, or `None` while it does not exist (e.g. between its
/// deletion and the pipeline creating it again).
pub async fn try_consumer_info(js: &jetstream::Context) -> Option<jetstream::consumer::Info> {
    let stream = js.get_stream("BUTLER_EVENTS").await.ok()?;
    stream.consumer_info("analytics-pipeline").await.ok()
}
