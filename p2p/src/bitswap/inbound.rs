//! Admission of inbound bitswap streams ([`crate::slots`]: at most `per_peer` open streams from
//! one peer and `total` from all peers together), and a stream that delivers no complete message
//! within [`IDLE`] is closed.

use std::time::Duration;

pub use crate::slots::{Slot, Slots};

/// An inbound stream that delivers no complete message for this long is closed (the peer
/// opens a new one when it has something to say; a 4 MiB message needs 270 kbit/s to arrive).
pub const IDLE: Duration = Duration::from_secs(120);
