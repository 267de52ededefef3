//! Every integration test in one binary: one link step instead of eleven, and one process
//! whose test threads share the machine. Each module drives the real `storeguard` binary or
//! the library against loopback fakes; `util` holds what they share.

mod util;

mod alertmanager;
mod channels;
mod channels_cli;
mod check;
mod cli;
mod daemon;
mod email;
mod faults;
mod fuzz;
mod layers;
mod leak;
mod mail;
mod page;
mod replicas;
