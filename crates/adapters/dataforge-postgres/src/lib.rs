//! The PostgreSQL store: the ports of `dataforge-domain` on a PostgreSQL primary shared by many
//! dataforge nodes, with reads spread over its streaming replicas.

mod config;

pub use config::PostgresConfig;
