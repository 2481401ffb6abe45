//! Handler argument templates. (Stub.)
