//! The credentials and their codecs: the visitor's ccmessaging-token, the agent's API key, and
//! the webhook signing secret. Pure code (no I/O): what is stored of them, and how a presented one is checked.

pub mod agent_key;
pub mod visitor_token;
pub mod webhook_secret;

pub use agent_key::AgentKey;
pub use visitor_token::{Claims, IssuedToken, SigningKey, TokenError, TokenHash, VerifiedToken};
pub use webhook_secret::WebhookSecret;
