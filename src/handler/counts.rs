//! Counts of the files and bytes a handler has put in place, bumped as it
//! finishes each file and read by whoever shows progress (the daemon's
//! progress bar during the initial sync). Only counts; it knows nothing about terminals or totals, and
//! handlers that cannot count (rsync runs as a child) simply never bump it.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Counts {
    files: AtomicU64,
    bytes: AtomicU64,
}

impl Counts {
    /// One regular file of `bytes` bytes is in place at the destination
    /// (copied, or found identical).
    pub fn add_file(&self, bytes: u64) {
        self.files.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn files(&self) -> u64 {
        self.files.load(Ordering::Relaxed)
    }

    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Starts counting from zero again.
    pub fn reset(&self) {
        self.files.store(0, Ordering::Relaxed);
        self.bytes.store(0, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_resets() {
        let p = Counts::default();
        p.add_file(10);
        p.add_file(5);
        assert_eq!((p.files(), p.bytes()), (2, 15));
        p.reset();
        assert_eq!((p.files(), p.bytes()), (0, 0));
    }
}
