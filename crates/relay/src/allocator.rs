//! For binaries whose global allocator is mimalloc (the `mimalloc` feature): how soon it
//! gives freed memory back to the system.
//!
//! mimalloc 3 keeps a freed page for a second before it purges it, and purges only when
//! the thread that owns the page next allocates or frees. After a join storm the relay's
//! threads go quiet, so what the storm freed (its `Welcome`s, its news, quinn's batches) stayed
//! resident: an idle connection cost about 30 KiB of RSS where its heap was 25. With a 10 ms
//! delay (mimalloc 2's default) the same storm leaves about 27.7 KiB per connection.

/// mimalloc's `mi_option_purge_delay`. The Rust bindings leave it out of their constants
/// ("for stability"), so it is checked against mimalloc 3's default before it is set.
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
/// mimalloc 3's own purge delay, in milliseconds.
const MIMALLOC_DEFAULT: std::ffi::c_long = 1000;
/// What the relay uses instead.
const PROMPT: std::ffi::c_long = 10;

/// Makes mimalloc give freed pages back after 10 ms instead of a second. Leaves the delay
/// alone if it is not mimalloc 3's default (set by `MIMALLOC_PURGE_DELAY`, or another
/// version's layout of the options). Returns the delay in effect, in milliseconds.
pub fn purge_promptly() -> std::ffi::c_long {
    #[allow(unsafe_code)]
    // SAFETY: reading and setting an option are plain calls into mimalloc, valid at any
    // time from any thread; the index is checked against the default it must have.
    unsafe {
        if libmimalloc_sys::mi_option_get(PURGE_DELAY) == MIMALLOC_DEFAULT {
            libmimalloc_sys::mi_option_set(PURGE_DELAY, PROMPT);
        }
        libmimalloc_sys::mi_option_get(PURGE_DELAY)
    }
}

#[cfg(test)]
mod tests {
    /// The option at that index is the purge delay: the next one is a constant the bindings
    /// do export, and after the call it reads 10 ms.
    #[test]
    fn the_purge_delay_is_set_to_ten_milliseconds() {
        assert_eq!(
            libmimalloc_sys::mi_option_use_numa_nodes,
            super::PURGE_DELAY + 1
        );
        assert_eq!(super::purge_promptly(), super::PROMPT);
    }
}
