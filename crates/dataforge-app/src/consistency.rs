//! Reading one's own writes when reads may come from replicas: the token a write answers with,
//! and the reads of a request that presents it.

use std::sync::Arc;

use dataforge_domain::ports::{ReadOrigin, ReadYourWrites, ReplicaState};

use crate::{App, AppError};

impl App {
    /// Reads through a store with replicas can be held to a client's earlier writes.
    pub fn with_read_your_writes(mut self, tokens: Arc<dyn ReadYourWrites>) -> Self {
        self.tokens = Some(tokens);
        self
    }

    /// The token a write's answer carries (`None` when every read sees every acknowledged write).
    pub async fn consistency_token(&self) -> Result<Option<String>, AppError> {
        match &self.tokens {
            Some(tokens) => Ok(tokens.position().await?),
            None => Ok(None),
        }
    }

    /// Holds one request's reads to every write up to `token` (when it presents one) and has
    /// them note in `origin` where they were served from; a store without replicas keeps its
    /// reader.
    pub fn read_after(&mut self, token: Option<&str>, origin: Arc<ReadOrigin>) {
        if let Some(reader) = self
            .tokens
            .as_ref()
            .and_then(|t| t.reading_after(token, origin))
        {
            self.reader = reader;
        }
    }

    /// The store's read replicas and their states.
    pub fn replicas(&self) -> Vec<ReplicaState> {
        self.health
            .as_ref()
            .map(|health| health.replicas())
            .unwrap_or_default()
    }
}
