//! The event loop. (Stub.)
