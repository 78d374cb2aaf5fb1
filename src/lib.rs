//! leavemsg: takes "leave a message / call me back" requests from a contact center's web
//! channel (CC-Messaging compatible) and hands them to agents.
#![forbid(unsafe_code)]

pub mod agent;
pub mod agent_key;
pub mod cli;
pub mod commands;
pub mod domain;
pub mod events;
pub mod limits;
pub mod ops;
pub mod pages;
pub mod settings;
pub mod startup;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod visitor;
