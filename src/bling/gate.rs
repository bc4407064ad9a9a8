//! A gate every call passes just before it leaves: the caller's way to say "this work may no
//! longer act for the tenant" without the client knowing why.
//!
//! The sync worker runs each job under a lease on its tenant. A call may wait long for the
//! tenant's rate limiter; if the lease was lost meanwhile (the process stalled past the lease's
//! time and another process took the tenant over), the call must not leave: the other process
//! may already be doing the same work, and a second `POST /pedidos/vendas` is a second order.
//! The client checks the gate after every limiter wait, right before sending, and returns
//! [`BlingError::Halted`](super::BlingError::Halted) without calling Bling when it is closed.
//!
//! The gate is scoped to the work's task ([`scope`]) rather than passed through every method:
//! every call made inside the scope, however deep, is checked. Outside any scope the gate is
//! open, so the client works as a plain library.
//!
//! A request may also carry a check of its own, [`StillWanted`]: the caller's "is this one
//! request still wanted?", which may read what it needs (the sync job re-reads the NF-e's
//! invoice from the ledger, which the client knows nothing of). The client awaits it after
//! the limiter's wait and the gate, right before each attempt leaves; a refusal is
//! [`BlingError::Halted`](super::BlingError::Halted), with no call made and none recorded.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// One request's own check, given by its caller (e.g.
/// [`BlingClient::enviar_nfe_if`](super::BlingClient::enviar_nfe_if)): `Err(why)` when the
/// request must not leave any more. It is asked before every attempt, after every wait for the
/// rate limiter, so it may take a moment (a database read) but must not wait for Bling.
pub type StillWanted<'a> =
    dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>> + Send + Sync + 'a;

/// Decides whether calls may still leave. Implementations must be cheap (it is asked before
/// every request) and never block.
pub trait CallGate: Send + Sync {
    /// `Err(why)` when no call may leave any more.
    fn open(&self) -> Result<(), String>;
}

tokio::task_local! {
    static GATE: Arc<dyn CallGate>;
}

/// Runs `work` with `gate` checked before each of its Bling calls.
pub async fn scope<F: Future>(gate: Arc<dyn CallGate>, work: F) -> F::Output {
    GATE.scope(gate, work).await
}

/// Whether the current work may still call Bling (open outside any [`scope`]).
pub fn check() -> Result<(), String> {
    GATE.try_with(|gate| gate.open()).unwrap_or(Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    struct Switch(AtomicBool);

    impl CallGate for Switch {
        fn open(&self) -> Result<(), String> {
            if self.0.load(Ordering::Relaxed) {
                Ok(())
            } else {
                Err("closed".into())
            }
        }
    }

    #[tokio::test]
    async fn open_outside_a_scope_and_as_the_gate_says_inside() {
        assert_eq!(check(), Ok(()));
        let switch = Arc::new(Switch(AtomicBool::new(true)));
        let gate: Arc<dyn CallGate> = switch.clone();
        scope(gate, async {
            assert_eq!(check(), Ok(()));
            switch.0.store(false, Ordering::Relaxed);
            tokio::task::yield_now().await;
            assert_eq!(check(), Err("closed".to_string()));
        })
        .await;
        assert_eq!(check(), Ok(()));
    }
}
