//! storeguard: keeps marketplace store credentials in an age-encrypted vault, proves on a
//! schedule that every store still logs in, and alerts people when a login turns abnormal.
//!
//! The library holds everything; `src/main.rs` only parses arguments and calls [`cli::main`].

#![forbid(unsafe_code)]

pub mod alert;
pub mod cli;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod duration;
pub mod event;
pub mod fake;
pub mod health;
pub mod http;
pub mod i18n;
pub mod mail;
pub mod marketplace;
pub mod model;
pub mod otp;
pub mod outcome;
pub mod replica;
pub mod route;
pub mod schedule;
pub mod state;
pub mod vault;
pub mod web;
pub mod zone;

/// storeguard's version, as sent in `user-agent`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
