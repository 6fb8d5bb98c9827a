//! A pull-only client of the OCI distribution API (REFERENCE §7). TO BE WRITTEN (helper C).
