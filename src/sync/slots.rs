//! The process's budget of jobs in flight, handed out fairly between shops.
//!
//! A freed slot goes to the waiting shop with the **fewest jobs running**, and among those to
//! the one that has waited longest. A shop with a fresh invoice and nothing running therefore
//! passes every backlog shop asking for its second, third or fourth job: one shop's backlog
//! delays another shop's fresh work by at most the time it takes one job to end, whatever the
//! backlog's size. Among shops with as much running, it is first come, first served, so a shop
//! that got a little service queues again behind those already waiting.
//!
//! # Invariants
//! - At most `capacity` [`Slot`]s exist at once; dropping one hands it to the next waiter
//!   before anyone else can take it (no barging), or returns it to the free count.
//! - A waiter that gives up (its future dropped) loses its place; a slot sent to it meanwhile
//!   goes on to the next waiter.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

pub struct FairSlots {
    capacity: usize,
    state: Mutex<State>,
}

struct State {
    free: usize,
    /// Waiters by (jobs the shop had running when it asked, arrival order).
    waiting: BTreeMap<(usize, u64), oneshot::Sender<Slot>>,
    arrivals: u64,
}

/// One job's place in the budget; given back when dropped.
pub struct Slot {
    slots: Option<Arc<FairSlots>>,
}

impl FairSlots {
    pub fn new(capacity: usize) -> Arc<FairSlots> {
        let capacity = capacity.max(1);
        Arc::new(FairSlots {
            capacity,
            state: Mutex::new(State {
                free: capacity,
                waiting: BTreeMap::new(),
                arrivals: 0,
            }),
        })
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Slots not in use now.
    pub fn available(&self) -> usize {
        self.lock().free
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A slot for a shop that has `running` jobs in flight already.
    pub async fn acquire(self: &Arc<Self>, running: usize) -> Slot {
        let receiver = {
            let mut state = self.lock();
            if state.free > 0 && state.waiting.is_empty() {
                state.free -= 1;
                return Slot {
                    slots: Some(Arc::clone(self)),
                };
            }
            let (sender, receiver) = oneshot::channel();
            state.arrivals += 1;
            let key = (running, state.arrivals);
            state.waiting.insert(key, sender);
            receiver
        };
        match receiver.await {
            Ok(slot) => slot,
            // The sender is only dropped with a slot in hand when `release` found this waiter
            // gone, which cannot be while we await; treat it as a fresh attempt regardless.
            Err(_) => Box::pin(self.acquire(running)).await,
        }
    }

    /// Hands a freed slot to the first waiter still waiting, or back to the free count.
    fn release(self: &Arc<Self>) {
        let mut state = self.lock();
        loop {
            let Some((_, waiter)) = state.waiting.pop_first() else {
                state.free += 1;
                return;
            };
            let slot = Slot {
                slots: Some(Arc::clone(self)),
            };
            match waiter.send(slot) {
                Ok(()) => return,
                // That waiter gave up: the slot comes back here without being released
                // (its `slots` is taken out below) and goes to the next one.
                Err(mut unsent) => unsent.slots = None,
            }
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(slots) = self.slots.take() {
            slots.release();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_freed_slot_goes_to_the_shop_with_the_fewest_jobs_running() {
        let slots = FairSlots::new(1);
        let held = slots.acquire(0).await;
        assert_eq!(slots.available(), 0);
        let (order_tx, mut order_rx) = tokio::sync::mpsc::unbounded_channel();
        // A backlog shop asks for its fourth job first, then a fresh shop for its first.
        for (name, running) in [("backlog", 3usize), ("fresh", 0usize)] {
            let (slots, order_tx) = (Arc::clone(&slots), order_tx.clone());
            tokio::spawn(async move {
                let slot = slots.acquire(running).await;
                order_tx.send(name).unwrap();
                tokio::time::sleep(Duration::from_millis(10)).await;
                drop(slot);
            });
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        drop(held);
        assert_eq!(order_rx.recv().await, Some("fresh"));
        assert_eq!(order_rx.recv().await, Some("backlog"));
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(slots.available(), 1);
    }

    #[tokio::test]
    async fn a_waiter_that_gives_up_passes_its_slot_on() {
        let slots = FairSlots::new(1);
        let held = slots.acquire(0).await;
        let gave_up = {
            let slots = Arc::clone(&slots);
            tokio::spawn(async move { slots.acquire(0).await })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        gave_up.abort();
        let _ = gave_up.await;
        let next = {
            let slots = Arc::clone(&slots);
            tokio::spawn(async move { slots.acquire(1).await })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        drop(held);
        let slot = tokio::time::timeout(Duration::from_secs(1), next)
            .await
            .expect("the slot reached the next waiter")
            .unwrap();
        drop(slot);
        assert_eq!(slots.available(), 1);
    }
}
