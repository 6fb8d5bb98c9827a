//! Integration tests: real daemons in separate processes.
