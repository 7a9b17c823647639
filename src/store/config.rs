//! The `[store]` section: which backend, where, and how durable its commits are.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config::{positive, spelled};

/// The durable store.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// `sqlite` (embedded, one file, WAL).
    pub backend: Backend,
    /// The SQLite file.
    pub path: PathBuf,
    /// `full` (fsync at every group commit: survives power loss) or `normal` (survives a
    /// process crash; a power loss may lose the last commits).
    pub synchronous: Synchronous,
    /// Most writes folded into one commit.
    pub batch_max: usize,
    /// Capacity of the queue in front of the writer.
    pub writer_queue: usize,
    /// Read connections.
    pub readers: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            backend: Backend::Sqlite,
            path: PathBuf::from("./var/switchboard.db"),
            synchronous: Synchronous::Full,
            batch_max: 1024,
            writer_queue: 8192,
            readers: 4,
        }
    }
}

spelled! {
    /// `store.backend`.
    Backend {
        Sqlite = "sqlite",
    }
}

spelled! {
    /// `store.synchronous`: when a commit is on disk.
    Synchronous {
        /// fsync at every group commit.
        Full = "full",
        /// The OS writes it out; survives a process crash, not a power loss.
        Normal = "normal",
    }
}

impl Synchronous {
    /// The value of SQLite's `synchronous` pragma (`FULL`, `NORMAL`).
    pub fn to_uppercase(&self) -> String {
        self.as_str().to_uppercase()
    }
}

impl StoreConfig {
    /// Problems with `store.…`.
    pub fn validate(&self) -> Vec<String> {
        let mut e = Vec::new();
        if let Backend::Other(b) = &self.backend {
            e.push(format!("store.backend: {b:?} is not supported (sqlite)"));
        }
        if self.path.as_os_str().is_empty() {
            e.push("store.path: must not be empty".into());
        }
        if let Synchronous::Other(s) = &self.synchronous {
            e.push(format!(
                "store.synchronous: {s:?} must be \"full\" or \"normal\""
            ));
        }
        positive(&mut e, "store.batch_max", self.batch_max);
        positive(&mut e, "store.writer_queue", self.writer_queue);
        positive(&mut e, "store.readers", self.readers);
        e
    }
}
