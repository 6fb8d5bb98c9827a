//! Progress of a push or pull: a bar per blob on a terminal, nothing otherwise; labels with
//! shortened digests.

/// Progress of the blobs of one push or pull (a bar each on a terminal, nothing otherwise).
pub trait Reporter: Send + Sync {
    /// A blob of `total` bytes starts; `label` names it (e.g. "layer 2/5 sha256:ab12…").
    fn start(&self, label: &str, total: u64) -> Box<dyn Bar>;
}

pub trait Bar: Send + Sync {
    fn inc(&self, n: u64);
    fn set_message(&self, msg: &str);
    fn finish(&self);
}

/// Reports nothing.
pub struct Silent;

struct NoBar;

impl Bar for NoBar {
    fn inc(&self, _: u64) {}
    fn set_message(&self, _: &str) {}
    fn finish(&self) {}
}

impl Reporter for Silent {
    fn start(&self, _: &str, _: u64) -> Box<dyn Bar> {
        Box::new(NoBar)
    }
}

/// `sha256:0123456789ab` — a digest shortened for labels.
pub fn short(digest: &str) -> &str {
    let mut end = digest.find(':').map_or(0, |i| i + 13).min(digest.len());
    // a hostile digest may hold any characters: never cut one in two
    while !digest.is_char_boundary(end) {
        end -= 1;
    }
    &digest[..end]
}

#[cfg(test)]
mod tests {
    use super::short;

    #[test]
    fn short_never_splits_a_character() {
        assert_eq!(short("sha256:0123456789abcdef"), "sha256:0123456789ab");
        assert_eq!(short("sha256:abc"), "sha256:abc");
        assert_eq!(short("nodigest"), "");
        // a hostile digest with a multi-byte character across the cut (a panic once)
        let hostile = format!("sha256:{}\u{20ac}x", "0".repeat(11));
        assert_eq!(short(&hostile), "sha256:00000000000");
    }
}
