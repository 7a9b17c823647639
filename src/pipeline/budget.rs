//! The byte budget of the stages (`[queues] max_bytes`): how much message content may be
//! in memory between receive and dispatch at once.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::message::Envelope;

/// A share of the byte budget of the stages (see [`ByteBudget`]).
pub type BudgetPermit = Arc<OwnedSemaphorePermit>;

/// The bytes of message content that may be inside the stages at once (`[queues]
/// max_bytes`), whatever the counts of the queues allow. Receive takes an envelope's
/// share before it commits and refuses ("try later") when there is no room; the feeder
/// waits for room, so work due from the store stays in the store meanwhile. Messages
/// waiting for a retry are not in memory at all: only in the store.
pub struct ByteBudget {
    sem: Arc<Semaphore>,
    max: usize,
}

impl ByteBudget {
    pub fn new(max: usize) -> ByteBudget {
        let max = max.clamp(1, Semaphore::MAX_PERMITS);
        ByteBudget {
            sem: Arc::new(Semaphore::new(max)),
            max,
        }
    }

    /// What an envelope costs: its content as held in memory, plus a fixed overhead for
    /// the envelope and its recipients. Capped at the whole budget, so that one message
    /// larger than it still goes through on its own.
    pub fn cost(&self, env: &Envelope) -> u32 {
        let c = &env.content;
        let bytes = c.text.len()
            + c.subject.as_ref().map_or(0, String::len)
            + c.parts.iter().map(|p| p.bytes.len() + 64).sum::<usize>()
            + c.mail
                .as_ref()
                .map_or(0, |m| m.headers.len() + 64 * m.rcpts.len())
            + 512
            + 128 * env.recipients.len();
        bytes.min(self.max).min(u32::MAX as usize) as u32
    }

    /// A share now, or `None` when the budget is spent.
    pub fn try_take(&self, env: &Envelope) -> Option<BudgetPermit> {
        self.sem
            .clone()
            .try_acquire_many_owned(self.cost(env))
            .ok()
            .map(Arc::new)
    }

    /// A share, waiting for room.
    pub async fn take(&self, env: &Envelope) -> Option<BudgetPermit> {
        self.sem
            .clone()
            .acquire_many_owned(self.cost(env))
            .await
            .ok()
            .map(Arc::new)
    }

    /// Bytes taken now.
    pub fn used(&self) -> usize {
        self.max - self.sem.available_permits()
    }
}
