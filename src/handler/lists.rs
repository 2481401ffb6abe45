//! rsync include/exclude list writing. (Stub.)
