//! Command line and configuration. (Stub.)
