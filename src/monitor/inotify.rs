//! inotify backend. (Stub.)
