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
    /// Extra command-line options.
    args: Vec<String>,
    /// The server process's environment variables, e.g. passwords a config file
    /// refers to as `$NAME`.
    env: Vec<(String, String)>,
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
        NatsServer::start_on(port, None, &[])
    }

    /// Starts a server with extra configuration lines, e.g. `max_payload: 4096`, on a
    /// port the server picks itself and reports in its ports file (no race between
    /// finding a free port and binding it); a restart keeps that port.
    pub fn start_with(config: Option<&str>) -> NatsServer {
        NatsServer::start_on(0, config, &[])
    }

    /// [`NatsServer::start_with`] with environment variables for the server process.
    pub fn start_with_env(config: &str, env: &[(&str, &str)]) -> NatsServer {
        let mut server = NatsServer {
            child: None,
            port: 0,
            store: tempfile::tempdir().unwrap(),
            config: Some(config.to_owned()),
            args: Vec::new(),
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        };
        server.spawn();
        server
    }

    /// Starts a server on `port` with extra configuration lines and command-line
    /// options.
    pub fn start_on(port: u16, config: Option<&str>, args: &[String]) -> NatsServer {
        let mut server = NatsServer {
            child: None,
            port,
            store: tempfile::tempdir().unwrap(),
            config: config.map(str::to_owned),
            args: args.to_vec(),
            env: Vec::new(),
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let bin = server_bin();
        let mut cmd = Command::new(&bin);
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        if let Some(extra) = &self.config {
            let path = self.store.path().join("server.conf");
            std::fs::write(&path, extra).unwrap();
            cmd.arg("-c").arg(path);
        }
        let port = if self.port == 0 {
            cmd.arg("--ports_file_dir").arg(self.store.path());
            "-1".to_owned()
        } else {
            self.port.to_string()
        };
        let child = cmd
            .args(["-a", "127.0.0.1", "-p", &port, "-js", "-sd"])
            .arg(self.store.path())
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.store.path().join("nats-server.log")).unwrap())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {} (set NATS_SERVER_BIN): {e}", bin.display())
            });
        let pid = child.id();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(15);
        if self.port == 0 {
            let ports = self.store.path().join(format!(
                "{}_{pid}.ports",
                bin.file_name().unwrap_or_default().to_string_lossy()
            ));
            while self.port == 0 {
                if let Ok(text) = std::fs::read_to_string(&ports)
                    && let Ok(v) = serde_json::from_str::<serde_json::Value>(&text)
                    && let Some(url) = v["nats"][0].as_str()
                {
                    self.port = url.rsplit(':').next().unwrap().parse().unwrap();
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "nats-server wrote no ports file {}:\n{}",
                    ports.display(),
                    std::fs::read_to_string(self.store.path().join("nats-server.log"))
                        .unwrap_or_default()
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
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

/// Three nats-servers with JetStream clustered over loopback routes, named `n0`..`n2`.
pub struct NatsCluster {
    /// The servers, in name order.
    pub servers: Vec<NatsServer>,
}

impl NatsCluster {
    /// Starts three clustered servers ([`NatsCluster::jetstream`] waits until they
    /// have elected a JetStream leader).
    pub fn start() -> NatsCluster {
        // The options of the compose file's `cluster` profile, on loopback ports.
        let routes: Vec<u16> = (0..3).map(|_| super::free_port()).collect();
        let route_urls: Vec<String> = routes
            .iter()
            .map(|p| format!("nats://127.0.0.1:{p}"))
            .collect();
        let servers = (0..3)
            .map(|i| {
                let args = [
                    "--server_name".to_owned(),
                    format!("n{i}"),
                    "--cluster_name".to_owned(),
                    "butler".to_owned(),
                    "--cluster".to_owned(),
                    route_urls[i].clone(),
                    "--routes".to_owned(),
                    route_urls.join(","),
                ];
                NatsServer::start_on(super::free_port(), None, &args)
            })
            .collect();
        NatsCluster { servers }
    }

    /// Every server's client URL, comma-separated, as `nats.url` takes them.
    pub fn url(&self) -> String {
        let urls: Vec<String> = self.servers.iter().map(NatsServer::url).collect();
        urls.join(",")
    }

    /// A client that knows every server of the cluster.
    pub async fn client(&self) -> async_nats::Client {
        let servers: Vec<String> = self.servers.iter().map(NatsServer::url).collect();
        async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .connect(servers)
            .await
            .unwrap()
    }

    /// A JetStream context on the cluster, once it has elected a JetStream leader.
    /// The events stream is left to the pipeline to create.
    pub async fn jetstream(&self) -> jetstream::Context {
        let client = self.client().await;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let reply = client
                .request("$JS.API.INFO", Bytes::new())
                .await
                .ok()
                .and_then(|m| serde_json::from_slice::<serde_json::Value>(&m.payload).ok());
            if reply.is_some_and(|r| r.get("error").is_none()) {
                return jetstream::new(client);
            }
            assert!(
                Instant::now() < deadline,
                "the cluster elected no JetStream leader"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The index of the server leading the events stream.
    pub async fn stream_leader(&self, js: &jetstream::Context) -> usize {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(mut stream) = js.get_stream("BUTLER_EVENTS").await
                && let Ok(info) = stream.info().await
                && let Some(leader) = info.cluster.as_ref().and_then(|c| c.leader.clone())
                && let Some(i) = leader.strip_prefix('n').and_then(|n| n.parse().ok())
            {
                return i;
            }
            assert!(Instant::now() < deadline, "the stream has no leader");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
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

/// The object `name` of the object store `bucket`, read whole by `client` (the object
/// store checks its digest as the last chunk arrives).
pub async fn read_object(client: &async_nats::Client, bucket: &str, name: &str) -> Vec<u8> {
    let store = jetstream::new(client.clone())
        .get_object_store(bucket)
        .await
        .unwrap();
    let mut object = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut store.get(name).await.unwrap(), &mut object)
        .await
        .unwrap();
    object
}
