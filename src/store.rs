//! [`Store`]: one immutable value in service behind an `Arc`, swapped whole. A reader takes a
//! snapshot once per request and sees either the old value or the new one, never a mixture; a
//! swap never blocks readers for longer than a pointer swap. Holds the inventory and, for the
//! HTTP workers, the configuration (both replaced on reload).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

#[derive(Debug)]
pub struct Store<T> {
    current: RwLock<Arc<T>>,
    /// usize, not u64: 32-bit MIPS has no 64-bit atomics.
    generation: AtomicUsize,
}

impl<T> Store<T> {
    pub fn new(value: T) -> Store<T> {
        Store {
            current: RwLock::new(Arc::new(value)),
            generation: AtomicUsize::new(1),
        }
    }

    /// The value now in service. Hold it for one request, then let it go.
    pub fn snapshot(&self) -> Arc<T> {
        // A poisoned lock still holds a complete Arc: the swap below cannot half-happen.
        Arc::clone(&self.current.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Puts a new value in service and returns the one it replaces.
    pub fn replace(&self, value: T) -> Arc<T> {
        let new = Arc::new(value);
        let old = std::mem::replace(
            &mut *self.current.write().unwrap_or_else(|e| e.into_inner()),
            new,
        );
        self.generation.fetch_add(1, Ordering::Release);
        old
    }

    /// Counts the values put in service (1 for the first).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire) as u64
    }
}
