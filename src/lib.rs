//! Switchboard: a message distribution gateway between the Internet side (IM servers, mail
//! servers, third-party apps) and an operator's Service Delivery Platform (SMS, MMS).
//!
//! Every message takes the same path — receive → auth → process → dispatch — over bounded
//! queues, with a durable store underneath. See `docs/ARCHITECTURE.md`.

pub mod address;
pub mod apps;
pub mod cards;
pub mod cidr;
pub mod config;
pub mod connectors;
pub mod content;
pub mod directory;
pub mod gateway;
pub mod http;
pub mod message;
pub mod pipeline;
pub mod sim;
pub mod store;
pub mod telemetry;

pub use config::Config;
