//! leavemsg: takes "leave a message / call me back" requests from a contact center's web
//! channel (CC-Messaging compatible) and hands them to agents.
#![forbid(unsafe_code)]

pub mod agent;
pub mod cli;
pub mod commands;
pub mod counters;
pub mod credentials;
pub mod domain;
pub mod limits;
pub mod live;
pub mod openapi;
pub mod ops;
pub mod outbox;
pub mod pages;
pub mod probe;
pub mod settings;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod visitor;
pub mod wire;
