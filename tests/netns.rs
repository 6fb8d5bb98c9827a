//! Network namespaces for tests that need a LAN: two namespaces joined by a veth pair, with
//! addresses only inside them. Created with `ip netns` (needs root) and deleted on drop.

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Two namespaces `<name>-a` (10.77.<n>.1/24) and `<name>-b` (10.77.<n>.2/24) on one veth link.
pub struct Lan {
    pub a: String,
    pub b: String,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Lan {
    pub fn create() -> Result<Lan, String> {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let base = format!("cidfs{}-{n}", pid % 100000);
        let lan = Lan {
            a: format!("{base}a"),
            b: format!("{base}b"),
        };
        let subnet = (pid % 200) as u8 + n as u8;
        let (va, vb) = (format!("v{}a", base), format!("v{}b", base));
        ip(&["netns", "add", &lan.a])?;
        ip(&["netns", "add", &lan.b])?;
        ip(&["link", "add", &va, "type", "veth", "peer", "name", &vb])?;
        ip(&["link", "set", &va, "netns", &lan.a])?;
        ip(&["link", "set", &vb, "netns", &lan.b])?;
        for (ns, dev, host) in [(&lan.a, &va, 1), (&lan.b, &vb, 2)] {
            let addr = format!("10.77.{subnet}.{host}/24");
            ip(&["-n", ns, "addr", "add", &addr, "dev", dev])?;
            ip(&["-n", ns, "link", "set", dev, "up"])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        Ok(lan)
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        // deleting a namespace removes its end of the veth, and with it the pair
        let _ = ip(&["netns", "delete", &self.a]);
        let _ = ip(&["netns", "delete", &self.b]);
    }
}
