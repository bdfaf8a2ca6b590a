//! Stopping a training run cleanly: SIGINT (Ctrl-C) and SIGTERM set a flag that the runner reads
//! between steps, so the step in flight finishes, `last` is written and the run returns.
//!
//! No crate: the binary already links the C library, and its `signal` function is all we need.
//!
//! Why this is sound: the handler only stores to an `AtomicBool` (lock-free on every target we
//! build for, so it is async-signal-safe: no allocation, no lock, no reentrancy hazard) and calls
//! `signal` to restore the default action, which POSIX lists as async-signal-safe. It may run on
//! any thread and at any point of the program, because it touches nothing else. A second Ctrl-C
//! therefore ends the process at once, as users expect when a step takes long.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set by the signal handler; read (never cleared) by the runners.
static SIGNALLED: AtomicBool = AtomicBool::new(false);

/// Whether SIGINT or SIGTERM arrived while a handler was installed.
pub fn signalled() -> bool {
    SIGNALLED.load(Ordering::SeqCst)
}

/// Forget an earlier signal (for a program that wants to train again after an interruption).
pub fn clear_signal() {
    SIGNALLED.store(false, Ordering::SeqCst);
}

/// A stop request shared with a run: raised by the process's signals or by [`StopToken::stop`]
/// (how a library caller or a test stops one run without touching others in the process).
#[derive(Clone, Debug, Default)]
pub struct StopToken(Arc<AtomicBool>);

impl StopToken {
    pub fn new() -> Self {
        Self::default()
    }
    /// Ask the run to stop after its current step.
    pub fn stop(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    /// Whether this token or a signal asks to stop.
    pub fn should_stop(&self) -> bool {
        self.0.load(Ordering::SeqCst) || signalled()
    }
}

#[cfg(unix)]
mod sys {
    use std::os::raw::c_int;
    use std::sync::atomic::Ordering;

    pub const SIGINT: c_int = 2;
    pub const SIGTERM: c_int = 15;
    /// `sighandler_t` is a pointer-sized value; 0 is `SIG_DFL`, all-ones is `SIG_ERR`.
    pub type Handler = usize;
    pub const SIG_DFL: Handler = 0;
    pub const SIG_ERR: Handler = usize::MAX;

    unsafe extern "C" {
        fn signal(signum: c_int, handler: Handler) -> Handler;
    }

    extern "C" fn on_signal(signum: c_int) {
        super::SIGNALLED.store(true, Ordering::SeqCst);
        // SAFETY: `signal` is async-signal-safe; restoring the default makes a second signal
        // end the process.
        unsafe {
            signal(signum, SIG_DFL);
        }
    }

    /// Install our handler for `signum`, returning the previous one.
    pub fn install(signum: c_int) -> Option<Handler> {
        let h = on_signal as extern "C" fn(c_int) as usize;
        // SAFETY: `on_signal` has the C signature `void (*)(int)` and only does
        // async-signal-safe work (see the module docs).
        let prev = unsafe { signal(signum, h) };
        (prev != SIG_ERR).then_some(prev)
    }

    pub fn restore(signum: c_int, prev: Handler) {
        // SAFETY: `prev` is what `signal` returned for this signal: a valid disposition.
        unsafe {
            signal(signum, prev);
        }
    }
}

/// While alive, SIGINT and SIGTERM raise the stop flag instead of ending the process; dropping it
/// puts back the previous handlers.
pub struct SignalGuard {
    #[cfg(unix)]
    prev: Vec<(std::os::raw::c_int, sys::Handler)>,
}

impl SignalGuard {
    pub fn install() -> SignalGuard {
        #[cfg(unix)]
        {
            let prev = [sys::SIGINT, sys::SIGTERM]
                .into_iter()
                .filter_map(|s| sys::install(s).map(|p| (s, p)))
                .collect();
            SignalGuard { prev }
        }
        #[cfg(not(unix))]
        SignalGuard {}
    }
}

impl Drop for SignalGuard {
    fn drop(&mut self) {
        #[cfg(unix)]
        for &(s, p) in &self.prev {
            // a handler that already fired reset itself to the default: put back what the
            // program had before the run either way
            sys::restore(s, p);
        }
    }
}
