//! Admission control: a bounded number of running generations and a bounded queue in front
//! of them. A request that finds the queue full is refused at once (RESOURCE_EXHAUSTED)
//! rather than piling up latency for everyone.
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub struct Admission {
    slots: Arc<Semaphore>,
    queued: AtomicUsize,
    max_queued: usize,
}

#[derive(Debug, PartialEq, Eq)]
pub struct QueueFull;

impl Admission {
    pub fn new(max_running: usize, max_queued: usize) -> Self {
        Self { slots: Arc::new(Semaphore::new(max_running)), queued: AtomicUsize::new(0), max_queued }
    }

    /// A generation slot, waiting in the queue if all are busy. The slot is held until the
    /// permit is dropped.
    pub async fn admit(&self) -> Result<OwnedSemaphorePermit, QueueFull> {
        if let Ok(permit) = self.slots.clone().try_acquire_owned() {
            return Ok(permit);
        }
        self.queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < self.max_queued).then_some(n + 1))
            .map_err(|_| QueueFull)?;
        // Leave the queue however this future ends (admitted, or dropped by a deadline).
        crate::metrics::queue_entered();
        let _leave = OnDrop(|| {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            crate::metrics::queue_left();
        });
        let permit = self.slots.clone().acquire_owned().await;
        permit.map_err(|_| QueueFull)
    }

    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }
}

/// Runs its closure when dropped.
struct OnDrop<F: FnMut()>(F);

impl<F: FnMut()> Drop for OnDrop<F> {
    fn drop(&mut self) {
        (self.0)()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn full_queue_is_refused_and_frees_up_again() {
        let a = Arc::new(Admission::new(1, 1));
        let running = a.admit().await.unwrap();
        let waiting = {
            let a = a.clone();
            tokio::spawn(async move { a.admit().await.map(drop) })
        };
        while a.queued() == 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(a.admit().await.unwrap_err(), QueueFull);
        drop(running);
        waiting.await.unwrap().unwrap();
        assert_eq!(a.queued(), 0);
        drop(a.admit().await.unwrap());
    }

    #[tokio::test]
    async fn a_dropped_waiter_leaves_the_queue() {
        let a = Admission::new(1, 1);
        let _running = a.admit().await.unwrap();
        let wait = tokio::time::timeout(std::time::Duration::from_millis(10), a.admit()).await;
        assert!(wait.is_err());
        assert_eq!(a.queued(), 0);
    }
}
