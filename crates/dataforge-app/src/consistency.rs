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

    /// The use cases of one request: their reads see every write up to `token` (when it presents
    /// one) and note in `origin` where they were served from.
    pub fn reading_after(&self, token: Option<&str>, origin: Arc<ReadOrigin>) -> App {
        match self
            .tokens
            .as_ref()
            .and_then(|t| t.reading_after(token, origin))
        {
            Some(reader) => App {
                reader,
                ..self.clone()
            },
            None => self.clone(),
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
