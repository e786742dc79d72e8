//! RocketMQ's own client protocol (the classic 4.x remoting protocol) and a name server.
//!
//! - [`codec`]: frames and both header encodings (JSON, ROCKETMQ).
//! - [`server`]: a readiness loop with a bounded worker pool and a table of request codes.
//! - [`client`]: a blocking client for one address (registration, tools, tests).
//! - [`namesrv`]: a name server (`rmqraft namesrv`, [`NameServer::start`]).
//! - [`broker_side`]: the broker codes of a group member ([`BrokerSide`]).
//! - [`register`]: the broker side's registration with the name servers ([`Registrar`]).
//! - [`txn`]: END_TRANSACTION and CHECK_TRANSACTION_STATE.
//!
//! See docs/REMOTING.md.

pub mod broker_side;
pub mod client;
pub mod codec;
pub mod codes;
pub mod json;
pub mod namesrv;
pub mod register;
pub mod server;
pub mod txn;

pub use broker_side::{BrokerSide, BrokerSideConfig};
pub use codec::{RemotingCommand, SerializeType};
pub use namesrv::{NameServer, NameServerConfig};
pub use register::{BrokerRegistration, Registrar, RegistrarConfig, TopicRoute};
pub use server::{RequestHandler, Responder, Server, ServerConfig};
