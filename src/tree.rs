//! The watched tree. (Stub.)
