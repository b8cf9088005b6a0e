//! nats-server processes for tests and benchmarks: one node or a three-node cluster on loopback, JetStream
//! in a temporary directory, killed (SIGKILL) when dropped. Not a stable API.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Why the servers cannot run here, if they cannot: `nats-server` is not on `PATH`.
pub fn nats_server_missing() -> Option<String> {
    match Command::new("nats-server").arg("--version").output() {
        Ok(out) if out.status.success() => None,
        Ok(out) => Some(format!("`nats-server --version` failed: {}", String::from_utf8_lossy(&out.stderr))),
        Err(e) => Some(format!("nats-server is not installed ({e}); `apt-get install nats-server`")),
    }
}

/// A port nothing listens on right now (the OS picks it; a race with another process is possible but rare,
/// and shows up as a server that does not start).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// One nats-server process and how to start it again.
pub struct Node {
    args: Vec<String>,
    /// The client port.
    pub port: u16,
    child: Option<Child>,
    log: PathBuf,
}

impl Node {
    fn start(&mut self) {
        let log = std::fs::File::create(&self.log).expect("server log file");
        let child = Command::new("nats-server")
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start nats-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nats-server did not listen on {} (log: {:?})",
                self.port,
                self.log
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: no shutdown, no flush, as a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again with the same ports and data directory.
    pub fn restart(&mut self) {
        self.kill();
        self.start();
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One server or a cluster, with the temporary directory holding their data and logs.
pub struct NatsServer {
    /// The processes.
    pub nodes: Vec<Node>,
    _dir: tempfile::TempDir,
}

impl NatsServer {
    /// One node with JetStream.
    pub fn single() -> NatsServer {
        let dir = tempfile::tempdir().expect("temporary directory");
        let port = free_port();
        let sd = dir.path().join("js");
        let args = ["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd", &sd.to_string_lossy()];
        let mut node = Node {
            args: args.map(String::from).to_vec(),
            port,
            child: None,
            log: dir.path().join("server.log"),
        };
        node.start();
        NatsServer { nodes: vec![node], _dir: dir }
    }

    /// `n` nodes routed to each other as cluster `foldlog`, each with JetStream in its own directory.
    pub fn cluster(n: usize) -> NatsServer {
        let dir = tempfile::tempdir().expect("temporary directory");
        let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
        let routes = ports.iter().map(|(_, c)| format!("nats://127.0.0.1:{c}")).collect::<Vec<_>>().join(",");
        let mut nodes = Vec::new();
        for (i, (port, cport)) in ports.iter().enumerate() {
            let sd = dir.path().join(format!("js-{i}"));
            let args = vec![
                "-js".to_owned(),
                "-a".into(),
                "127.0.0.1".into(),
                "-p".into(),
                port.to_string(),
                "-sd".into(),
                sd.to_string_lossy().into_owned(),
                "-n".into(),
                format!("node-{i}"),
                "--cluster_name".into(),
                "foldlog".into(),
                "--cluster".into(),
                format!("nats://127.0.0.1:{cport}"),
                "--routes".into(),
                routes.clone(),
            ];
            nodes.push(Node {
                args,
                port: *port,
                child: None,
                log: dir.path().join(format!("node-{i}.log")),
            });
        }
        for node in &mut nodes {
            node.start();
        }
        NatsServer { nodes, _dir: dir }
    }

    /// Every node's URL, comma-separated (what a client connects to).
    pub fn url(&self) -> String {
        self.nodes.iter().map(Node::url).collect::<Vec<_>>().join(",")
    }
}
