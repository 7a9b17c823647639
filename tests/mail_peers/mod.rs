//! Real mail peers for the mail tests: swaks (SMTP client) and Postfix's smtp-sink /
//! smtp-source (unpacked from the `postfix` package by scripts/test.sh, never installed).
//!
//! A missing peer fails the test when `CI=true`; elsewhere the test is skipped with a loud
//! message on stderr.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use super::common::{free_port, wait_for};

/// Reports a missing peer: a failure under CI, a loud skip elsewhere.
pub fn missing(what: &str) {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{what} is missing and CI=true: scripts/test.sh installs it");
    }
    eprintln!(
        "\n!!!!!!!! SKIPPED: {what} is missing; run scripts/test.sh (as root) to install it !!!!!!!!\n"
    );
}

/// The swaks binary, if installed.
pub fn swaks_bin() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("swaks"))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        missing("swaks (apt-get install swaks)");
    }
    found
}

/// The folder the postfix package was unpacked into (it holds `usr/sbin/smtp-sink`):
/// `$SWITCHBOARD_POSTFIX_DIR`, else `target/peers/postfix`, else an installed Postfix.
pub fn postfix_dir() -> Option<PathBuf> {
    let mut candidates = Vec::new();
    if let Some(d) = std::env::var_os("SWITCHBOARD_POSTFIX_DIR") {
        candidates.push(PathBuf::from(d));
    }
    candidates.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("target/peers/postfix"));
    candidates.push(PathBuf::from("/"));
    let found = candidates.into_iter().find(|d| {
        d.join("usr/sbin/smtp-sink").is_file() && d.join("usr/sbin/smtp-source").is_file()
    });
    if found.is_none() {
        missing("Postfix's smtp-sink/smtp-source (apt-get download postfix; dpkg -x)");
    }
    found
}

/// A Postfix tool from the unpacked package, ready to run.
pub fn postfix_tool(dir: &Path, name: &str) -> Command {
    let mut c = Command::new(dir.join("usr/sbin").join(name));
    c.env("LD_LIBRARY_PATH", dir.join("usr/lib/postfix"));
    c
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Runs swaks with `args` against `server`; returns (exit code, transcript).
pub async fn swaks(server: SocketAddr, args: &[&str]) -> (i32, String) {
    let bin = swaks_bin().expect("swaks");
    let mut all: Vec<String> = vec![
        "--server".into(),
        server.to_string(),
        "--helo".into(),
        "client.example.com".into(),
        "--timeout".into(),
        "20".into(),
    ];
    all.extend(args.iter().map(|s| s.to_string()));
    let out = tokio::task::spawn_blocking(move || {
        Command::new(bin)
            .args(&all)
            .stdin(Stdio::null())
            .output()
            .expect("cannot run swaks")
    })
    .await
    .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// Postfix's smtp-sink on a free loopback port, dumping every message into a folder.
pub struct SmtpSink {
    child: Child,
    pub addr: SocketAddr,
    pub dumps: PathBuf,
    _dir: tempfile::TempDir,
}

impl SmtpSink {
    /// Starts smtp-sink with `extra` options (`-r RCPT`, …); `None` if it is missing.
    pub async fn start(extra: &[&str]) -> Option<SmtpSink> {
        let pf = postfix_dir()?;
        let dir = tempfile::tempdir().unwrap();
        let dumps = dir.path().join("mails");
        std::fs::create_dir(&dumps).unwrap();
        use std::os::unix::fs::PermissionsExt;
        // As root smtp-sink drops to `nobody`, who must reach and write the dump folder.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&dumps, std::fs::Permissions::from_mode(0o777)).unwrap();
        let port = free_port();
        let mut cmd = postfix_tool(&pf, "smtp-sink");
        if is_root() {
            cmd.args(["-u", "nobody"]);
        }
        cmd.arg("-d")
            .arg(format!("{}/%Y%m%d%H%M%S.", dumps.display()))
            .args(extra)
            .arg(format!("127.0.0.1:{port}"))
            .arg("256")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        let child = cmd.spawn().expect("cannot start smtp-sink");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        wait_for(
            Duration::from_secs(10),
            "smtp-sink to listen",
            || async move { TcpStream::connect(addr).await.ok().map(|_| ()) },
        )
        .await;
        Some(SmtpSink {
            child,
            addr,
            dumps,
            _dir: dir,
        })
    }

    /// Every message dumped so far (smtp-sink's `X-…-Args` lines, then the message).
    pub fn mails(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Ok(rd) = std::fs::read_dir(&self.dumps) {
            for e in rd.flatten() {
                if let Ok(b) = std::fs::read(e.path()) {
                    out.push(String::from_utf8_lossy(&b).into_owned());
                }
            }
        }
        out
    }

    /// Waits for a dumped message that satisfies `pred`.
    pub async fn wait_mail(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        wait_for(Duration::from_secs(20), what, || {
            let found = self.mails().into_iter().find(|m| pred(m));
            async move { found }
        })
        .await
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A raw SMTP client for transcript-style tests.
pub struct Smtp {
    r: BufReader<OwnedReadHalf>,
    w: OwnedWriteHalf,
}

impl Smtp {
    /// Connects and returns the client and the greeting.
    pub async fn connect(addr: SocketAddr) -> (Smtp, String) {
        let s = TcpStream::connect(addr).await.unwrap();
        let (r, w) = s.into_split();
        let mut c = Smtp {
            r: BufReader::new(r),
            w,
        };
        let greeting = c.reply().await;
        (c, greeting)
    }

    /// Reads one (possibly multi-line) reply.
    pub async fn reply(&mut self) -> String {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(Duration::from_secs(20), self.r.read_line(&mut line))
                .await
                .expect("no SMTP reply in time")
                .unwrap();
            if n == 0 {
                return all;
            }
            all.push_str(&line);
            if line.len() < 4 || line.as_bytes()[3] != b'-' {
                return all;
            }
        }
    }

    pub async fn send(&mut self, raw: &str) {
        self.w.write_all(raw.as_bytes()).await.unwrap();
    }

    /// Sends one command line and reads its reply.
    pub async fn cmd(&mut self, line: &str) -> String {
        self.send(&format!("{line}\r\n")).await;
        self.reply().await
    }

    /// One whole transaction; returns the reply to the end of data (or the first refusal).
    pub async fn mail(&mut self, from: &str, to: &[&str], body: &str) -> String {
        let r = self.cmd(&format!("MAIL FROM:<{from}>")).await;
        if !r.starts_with("250") {
            return r;
        }
        for t in to {
            let r = self.cmd(&format!("RCPT TO:<{t}>")).await;
            if !r.starts_with("250") {
                self.cmd("RSET").await;
                return r;
            }
        }
        let r = self.cmd("DATA").await;
        if !r.starts_with("354") {
            return r;
        }
        self.send(&format!("{body}\r\n.\r\n")).await;
        self.reply().await
    }
}
