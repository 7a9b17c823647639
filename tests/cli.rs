//! The command line: `check-config` reports every error with its key and accepts the shipped
//! configs; `sdp-sim` runs the simulator on its own.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::*;

fn switchboard(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cannot run the switchboard binary")
}

#[test]
fn check_config_reports_every_error_with_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        r#"
drain_timeout_secs = 0

[http]
listen = "localhost"

[[http.clients]]
name = "app"
token = "short"
senders = ["fax:123"]

[queues]
auth = 0
dispatch = 0

[store]
synchronous = "sometimes"

[sdp]
send_sms_url = "ftp://sdp.example.org/SendSms"
"#,
    )
    .unwrap();
    let out = switchboard(&["check-config", "-c", path.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "exit {}; {stderr}", out.status);
    for key in [
        "drain_timeout_secs",
        "http.listen",
        "http.clients[0].token",
        "http.clients[0].senders[0]",
        "queues.auth",
        "queues.dispatch",
        "store.synchronous",
        "sdp.send_sms_url",
        // An SDP with no callback credential: every callback would be refused.
        "sdp.callbacks",
    ] {
        assert!(stderr.contains(key), "{key} not reported:\n{stderr}");
    }
    assert!(!stderr.contains("queues.process"), "{stderr}");
    assert!(stderr.contains("9 error(s)"), "{stderr}");
}

#[test]
fn check_config_names_an_unknown_key_and_a_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("typo.toml");
    std::fs::write(&path, "[http]\nlisten_on = \"127.0.0.1:8080\"\n").unwrap();
    let out = switchboard(&["check-config", "-c", path.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("listen_on"), "{stderr}");

    let missing = dir.path().join("missing.toml");
    let out = switchboard(&["check-config", "-c", missing.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("missing.toml"), "{stderr}");
}

#[test]
fn check_config_accepts_the_shipped_configs() {
    for file in ["config/switchboard.toml", "config/production.toml"] {
        assert!(
            Path::new(env!("CARGO_MANIFEST_DIR")).join(file).exists(),
            "{file}"
        );
        let out = switchboard(&["check-config", "-c", file]);
        assert!(
            out.status.success(),
            "{file}: exit {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("ok"));
    }
}

/// Kills the process on drop if the test fails before it exits.
struct Reap(std::process::Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn sdp_sim_runs_on_its_own() {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["sdp-sim", "--listen", &listen])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("cannot run the switchboard binary");
    let mut sim = Reap(child);
    let url = format!("http://{listen}/sim/stats");
    let stats: serde_json::Value =
        wait_for(Duration::from_secs(20), "the simulator to answer", || {
            let url = url.clone();
            async move { reqwest::get(&url).await.ok()?.json().await.ok() }
        })
        .await;
    assert_eq!(stats["received"], 0, "{stats}");
    assert_eq!(stats["duplicates"], 0, "{stats}");

    send_signal(sim.0.id(), "TERM");
    let status = wait_exit(&mut sim.0, Duration::from_secs(10), "the simulator to exit").await;
    assert!(status.success(), "exit status {status}");
}
