//! Keeping freed memory in the process for the next training step.
//!
//! Why: a training step allocates and frees a few hundred megabytes of activations
//! and gradients. glibc's malloc returns freed blocks at the top of its heap to the
//! system once they pass a trim threshold, and serves large blocks with fresh
//! mappings, so every step page-faults its activations back in and the kernel zeroes
//! them: on the d 256 benchmark model about 22 000 page faults a step and a tenth of
//! its CPU time. Raising both thresholds keeps that memory for reuse; peak memory is
//! unchanged, memory freed after the peak is not returned until exit.

/// Largest block served from the heap rather than its own mapping (glibc's ceiling
/// for this setting on 64-bit systems).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 32 << 20;

/// Tells the allocator to keep freed memory for reuse. Call once at start-up; a no-op
/// where the allocator is not glibc's.
pub fn retain_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes glibc's allocator parameters, under the
    // allocator's own lock; a rejected value leaves the default in place.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        libc::mallopt(libc::M_TRIM_THRESHOLD, libc::c_int::MAX);
    }
}
