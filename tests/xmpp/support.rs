//! Real XMPP peers for the gateway's tests and benchmark: a Prosody server started from a
//! config written into a temporary folder (loopback only, ports picked free), and XMPP
//! users played by `tests/xmpp/client.py` (slixmpp), driven over JSON lines.
//!
//! Every process started here is killed when its handle is dropped.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use switchboard::address::Network;
use switchboard::connectors::xmpp::{ComponentConfig, XmppConfig};

use crate::common::{free_port, wait_for};

/// Whether Prosody and slixmpp are installed. When they are not, a test fails under
/// `CI=true` and is skipped loudly otherwise.
pub fn peers_present() -> bool {
    let prosody = Command::new("sh")
        .args(["-c", "command -v prosody && command -v prosodyctl"])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let slixmpp = Command::new("python3")
        .args(["-c", "import slixmpp"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if prosody && slixmpp {
        return true;
    }
    let what = match (prosody, slixmpp) {
        (false, false) => "Prosody and slixmpp are",
        (false, true) => "Prosody is",
        _ => "slixmpp (python3) is",
    };
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{what} not installed; scripts/test.sh installs them");
    }
    eprintln!(
        "\n**********\nSKIPPED: {what} not installed (scripts/test.sh installs them)\n**********\n"
    );
    false
}

/// A Prosody server on loopback with a `VirtualHost "localhost"` and the given components.
pub struct Prosody {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub c2s_port: u16,
    pub component_port: u16,
    child: Option<Child>,
}

impl Prosody {
    /// Writes the config, registers `users` (name, password) and starts the server.
    pub async fn start(components: &[(&str, &str)], users: &[(&str, &str)]) -> Prosody {
        let dir = tempfile::tempdir().unwrap();
        let (c2s_port, component_port) = (free_port(), free_port());
        let d = dir.path().display().to_string();
        std::fs::create_dir_all(dir.path().join("data")).unwrap();
        std::fs::create_dir_all(dir.path().join("certs")).unwrap();
        let mut cfg = format!(
            r#"-- written by the gateway's XMPP tests
run_as_root = true
pidfile = "{d}/prosody.pid"
data_path = "{d}/data"
certificates = "{d}/certs"
log = {{ {{ levels = {{ min = "info" }}, to = "file", filename = "{d}/prosody.log" }} }}
network_settings = {{ nagle = false }}
interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ {c2s_port} }}
c2s_interfaces = {{ "127.0.0.1" }}
component_ports = {{ {component_port} }}
component_interfaces = {{ "127.0.0.1" }}
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
authentication = "internal_plain"
modules_enabled = {{ "roster"; "saslauth"; "disco"; "ping" }}
modules_disabled = {{ "s2s" }}
VirtualHost "localhost"
"#
        );
        for (domain, secret) in components {
            cfg.push_str(&format!(
                "Component \"{domain}\"\n  component_secret = \"{secret}\"\n"
            ));
        }
        let config = dir.path().join("prosody.cfg.lua");
        std::fs::write(&config, cfg).unwrap();
        for (user, pw) in users {
            let out = Command::new("prosodyctl")
                .arg("--config")
                .arg(&config)
                .args(["register", user, "localhost", pw])
                .output()
                .expect("cannot run prosodyctl");
            assert!(
                out.status.success(),
                "prosodyctl register {user}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let mut p = Prosody {
            dir,
            config,
            c2s_port,
            component_port,
            child: None,
        };
        p.spawn().await;
        p
    }

    /// Starts the server (again) and waits until both ports accept connections.
    pub async fn spawn(&mut self) {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("stdout.log"))
            .unwrap();
        let child = Command::new("prosody")
            .arg("--config")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("cannot start prosody");
        self.child = Some(child);
        for port in [self.c2s_port, self.component_port] {
            wait_for(
                Duration::from_secs(15),
                "Prosody to listen",
                || async move {
                    tokio::net::TcpStream::connect(("127.0.0.1", port))
                        .await
                        .ok()
                        .map(|_| ())
                },
            )
            .await;
        }
    }

    /// Kills the server (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prosody.log")).unwrap_or_default()
    }

    pub fn component_server(&self) -> String {
        format!("127.0.0.1:{}", self.component_port)
    }
}

impl Drop for Prosody {
    fn drop(&mut self) {
        self.kill();
    }
}

/// An XMPP user: `tests/xmpp/client.py` logged in to Prosody.
pub struct User {
    child: Child,
    stdin: ChildStdin,
    events: Arc<Mutex<Vec<Value>>>,
    pub jid: String,
}

impl User {
    /// Logs `name@localhost` in and waits until it is online.
    pub async fn login(p: &Prosody, name: &str, password: &str) -> User {
        User::login_with(p, name, password, &[]).await
    }

    pub async fn login_with(p: &Prosody, name: &str, password: &str, extra: &[&str]) -> User {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/xmpp/client.py");
        let jid = format!("{name}@localhost");
        let mut child = Command::new("python3")
            .arg(script)
            .args(["--jid", &jid, "--password", password, "--port"])
            .arg(p.c2s_port.to_string())
            .args(["--deadline", "300"])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("cannot start python3 tests/xmpp/client.py");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let events: Arc<Mutex<Vec<Value>>> = Arc::default();
        let sink = events.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let v = serde_json::from_str(&line).unwrap_or(Value::String(line));
                sink.lock().unwrap().push(v);
            }
        });
        let u = User {
            child,
            stdin,
            events,
            jid,
        };
        u.wait("online", |_| true).await;
        u
    }

    /// Sends one command to the client.
    pub fn cmd(&mut self, v: Value) {
        writeln!(self.stdin, "{v}").unwrap();
        self.stdin.flush().unwrap();
    }

    /// Every event so far.
    pub fn events(&self) -> Vec<Value> {
        self.events.lock().unwrap().clone()
    }

    /// Waits (up to 20 s) for an event of `kind` that satisfies `pred`.
    pub async fn wait(&self, kind: &str, pred: impl Fn(&Value) -> bool) -> Value {
        self.wait_for(Duration::from_secs(20), kind, pred).await
    }

    pub async fn wait_for(
        &self,
        deadline: Duration,
        kind: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let end = tokio::time::Instant::now() + deadline;
        loop {
            let events = self.events();
            if let Some(e) = events.iter().find(|e| e["event"] == kind && pred(e)) {
                return e.clone();
            }
            if tokio::time::Instant::now() >= end {
                let seen: Vec<String> = events.iter().map(|e| e.to_string()).collect();
                panic!(
                    "timed out after {deadline:?} waiting for the XMPP user {} to see a {kind:?} event; it saw:\n{}",
                    self.jid,
                    seen.join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for User {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A counter or gauge from a Prometheus text page (`name{labels}` exactly as written).
pub fn metric(page: &str, series: &str) -> Option<f64> {
    page.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// The gateway's `[xmpp]` for Prosody `p`: one component per `(domain, network, secret)`,
/// reconnecting quickly.
pub fn xmpp_config(p: &Prosody, components: &[(&str, Network, &str)]) -> XmppConfig {
    XmppConfig {
        server: p.component_server(),
        components: components
            .iter()
            .map(|(d, n, s)| ComponentConfig {
                domain: d.to_string(),
                network: *n,
                secret: s.to_string(),
                name: None,
            })
            .collect(),
        reconnect_initial_ms: 100,
        reconnect_max_ms: 1000,
        link_down_retry_ms: 200,
        ..XmppConfig::default()
    }
}
