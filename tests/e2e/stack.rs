//! The three binaries' applications, started in-process on port 0 against the real services.
