//! Threads that run on spare CPU time. The tail of a pipeline that is cheaper than what feeds it
//! (the CLI hashing and writing the blob its daemon fetches) can run under `SCHED_IDLE`, so that
//! it never takes a CPU from the work that feeds it and uses the moments when that work waits:
//! on a machine whose CPUs the daemons share, a pull spent a fifth of its time with a CPU idle
//! while the writer, scheduled as their equal, held the daemons back (README, Performance).
//!
//! A thread so lowered can starve on a loaded machine, so its feeder raises it back
//! ([`Lowered::raise`]) when it has waited too long for it. Raising needs `CAP_SYS_NICE` (or an
//! `RLIMIT_NICE` that allows the thread's nice value), so a thread is lowered only where it can
//! be raised again, and only from the default policy.

use std::io;

/// A thread lowered to `SCHED_IDLE` by [`lower_this_thread`].
#[derive(Clone, Copy, Debug)]
pub struct Lowered {
    tid: libc::pid_t,
}

/// Raises its thread back when dropped: a pool thread goes back to the pool as it came.
#[derive(Debug)]
pub struct Lowering(Lowered);

impl Lowering {
    /// The lowered thread, for whoever may raise it sooner.
    pub fn thread(&self) -> Lowered {
        self.0
    }
}

impl Drop for Lowering {
    fn drop(&mut self) {
        let _ = self.0.raise();
    }
}

/// Lowers the calling thread to `SCHED_IDLE` until the returned guard goes, when the thread runs
/// under the default policy and may be raised back; `None` (and the thread as it was) otherwise.
pub fn lower_this_thread() -> Option<Lowering> {
    // SAFETY: plain system calls on the calling thread, no pointers kept
    let (tid, policy) = unsafe { (libc::gettid(), libc::sched_getscheduler(0)) };
    if policy != libc::SCHED_OTHER || !may_raise() {
        return None;
    }
    set_policy(tid, libc::SCHED_IDLE).ok()?;
    Some(Lowering(Lowered { tid }))
}

impl Lowered {
    /// Puts the thread back under the default policy (its nice value never changed). Harmless
    /// when it is already there.
    pub fn raise(&self) -> io::Result<()> {
        set_policy(self.tid, libc::SCHED_OTHER)
    }
}

fn set_policy(tid: libc::pid_t, policy: libc::c_int) -> io::Result<()> {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` outlives the call, which only reads it
    if unsafe { libc::sched_setscheduler(tid, policy, &param) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Whether a thread of this process may leave `SCHED_IDLE` again: the kernel treats it as nice
/// 20 and lets it back only to a nice value `RLIMIT_NICE` allows, or with `CAP_SYS_NICE`.
pub(crate) fn may_raise() -> bool {
    /// `CAP_SYS_NICE`'s bit in the capability sets.
    const CAP_SYS_NICE: u32 = 23;
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` outlives the call, which writes it; getpriority reads nothing of ours
    let (got, nice) = unsafe {
        (
            libc::getrlimit(libc::RLIMIT_NICE, &mut lim),
            libc::getpriority(libc::PRIO_PROCESS, 0),
        )
    };
    if got == 0 && lim.rlim_cur >= (20 - nice.clamp(-20, 19)) as libc::rlim_t {
        return true;
    }
    std::fs::read_to_string("/proc/thread-self/status")
        .ok()
        .and_then(|s| {
            let hex = s.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
            u64::from_str_radix(hex.trim(), 16).ok()
        })
        .is_some_and(|caps| caps & (1 << CAP_SYS_NICE) != 0)
}

/// The calling thread's scheduling policy.
#[cfg(test)]
pub fn this_thread_policy() -> libc::c_int {
    // SAFETY: a plain system call on the calling thread
    unsafe { libc::sched_getscheduler(0) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A lowered thread runs under SCHED_IDLE until raised, from another thread too, or until its
    /// guard goes; a thread under another policy than the default is left alone.
    #[test]
    fn a_thread_is_lowered_and_raised_back() {
        std::thread::spawn(|| {
            let Some(lowering) = lower_this_thread() else {
                assert!(!may_raise(), "lowering failed though it could be undone");
                return;
            };
            assert_eq!(this_thread_policy(), libc::SCHED_IDLE);
            let l = lowering.thread();
            std::thread::scope(|s| {
                s.spawn(|| l.raise().unwrap());
            });
            assert_eq!(this_thread_policy(), libc::SCHED_OTHER);
            drop(lowering);
            assert_eq!(this_thread_policy(), libc::SCHED_OTHER);
            let lowering = lower_this_thread().unwrap();
            assert_eq!(this_thread_policy(), libc::SCHED_IDLE);
            drop(lowering);
            assert_eq!(this_thread_policy(), libc::SCHED_OTHER);

            set_policy(0, libc::SCHED_BATCH).unwrap();
            assert!(lower_this_thread().is_none());
            assert_eq!(this_thread_policy(), libc::SCHED_BATCH);
        })
        .join()
        .unwrap();
    }
}
