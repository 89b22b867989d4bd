//! Small operating-system helpers shared by the server's subsystems.

/// Lowers the calling thread's priority to nice 10 (Linux; elsewhere nothing): work that can
/// wait, such as bcrypt or a cached blob's digest, yields the CPU to request handling.
pub fn lower_thread_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: gettid and setpriority take no pointers and act on this thread only.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, 10);
    }
}
