//! The two credentials and their codecs: the visitor's ccmessaging-token and the agent's API
//! key. Pure code (no I/O): what is stored of them, and how a presented one is checked.

pub mod agent_key;
pub mod visitor_token;

pub use agent_key::AgentKey;
pub use visitor_token::{Claims, IssuedToken, SigningKey, TokenError, TokenHash, VerifiedToken};
