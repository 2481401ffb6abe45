//! Child processes. (Stub.)
