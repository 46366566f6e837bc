//! Where a run trains (`device = "cpu" | "cuda" | "cuda:N"`), and the check that a
//! CUDA driver and the asked-for GPU exist before burn's CUDA backend is started:
//! without it, a machine with no driver ends in a panic deep inside cubecl.
//!
//! The check loads `libcuda` itself (the driver API's `cuInit` and
//! `cuDeviceGetCount`, looked up with `dlopen`/`dlsym`): the same library cudarc
//! loads at run time, so a `--features cuda` build still starts on machines without
//! one. No crate offers this probe without also initialising a backend.

use std::ffi::{c_char, c_int, c_uint, CStr};
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A training device.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DeviceKind {
    /// burn's `flex` backend on the CPU (all cores through rayon).
    #[default]
    Cpu,
    /// burn's CUDA backend on the GPU of this index (build with `--features cuda`).
    Cuda(usize),
}

impl fmt::Display for DeviceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cpu => write!(f, "cpu"),
            Self::Cuda(0) => write!(f, "cuda"),
            Self::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

impl std::str::FromStr for DeviceKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("`{s}` is not a device: use \"cpu\", \"cuda\" or \"cuda:N\"");
        match s {
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|i| i.parse().ok())
                .map(Self::Cuda)
                .ok_or_else(bad),
        }
    }
}

impl Serialize for DeviceKind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DeviceKind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// How many CUDA devices the driver sees, or why there is no driver to ask.
pub fn cuda_device_count() -> Result<usize, String> {
    type CuInit = unsafe extern "C" fn(c_uint) -> c_int;
    type CuDeviceGetCount = unsafe extern "C" fn(*mut c_int) -> c_int;
    let mut last = String::new();
    for name in [c"libcuda.so.1", c"libcuda.so"] {
        // SAFETY: dlopen with a valid NUL-terminated name; the handle is kept for the
        // process's lifetime (cudarc opens the same library again later).
        let lib = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
        if lib.is_null() {
            // SAFETY: dlerror returns NULL or a valid C string owned by libc.
            let err = unsafe { libc::dlerror() };
            if !err.is_null() {
                // SAFETY: checked non-null above; libc keeps it valid until the next dl call.
                last = unsafe { CStr::from_ptr(err as *const c_char) }
                    .to_string_lossy()
                    .into_owned();
            }
            continue;
        }
        // SAFETY: valid handle and NUL-terminated symbol names.
        let (init, count) = unsafe {
            (
                libc::dlsym(lib, c"cuInit".as_ptr()),
                libc::dlsym(lib, c"cuDeviceGetCount".as_ptr()),
            )
        };
        if init.is_null() || count.is_null() {
            return Err("the CUDA driver library lacks cuInit/cuDeviceGetCount".into());
        }
        // SAFETY: the symbols are the driver API functions of these signatures
        // (CUresult cuInit(unsigned int); CUresult cuDeviceGetCount(int*)).
        let (init, count) = unsafe {
            (
                std::mem::transmute::<*mut libc::c_void, CuInit>(init),
                std::mem::transmute::<*mut libc::c_void, CuDeviceGetCount>(count),
            )
        };
        // SAFETY: plain driver calls with a valid out-pointer.
        let code = unsafe { init(0) };
        if code != 0 {
            return Err(format!(
                "the CUDA driver failed to initialise (CUresult {code}; no GPU visible?)"
            ));
        }
        let mut n: c_int = 0;
        // SAFETY: as above.
        let code = unsafe { count(&mut n) };
        if code != 0 {
            return Err(format!(
                "the CUDA driver cannot count devices (CUresult {code})"
            ));
        }
        return Ok(n.max(0) as usize);
    }
    Err(format!(
        "no CUDA driver found (libcuda.so.1 could not be loaded: {last})"
    ))
}

/// Checks that `devices` can be used before a backend is started on them: the driver
/// is asked once for its GPU count.
pub fn check(devices: &[DeviceKind]) -> Result<(), String> {
    let Some(first) = devices.iter().find(|d| matches!(d, DeviceKind::Cuda(_))) else {
        return Ok(());
    };
    let n = cuda_device_count()
        .map_err(|why| format!("device = \"{first}\": {why}; train on device = \"cpu\" here"))?;
    for &device in devices {
        if let DeviceKind::Cuda(index) = device {
            if index >= n {
                return Err(format!(
                    "device = \"{device}\": this machine has {n} CUDA device(s) (cuda:0 … cuda:{})",
                    n.saturating_sub(1)
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_parse_and_print() {
        for (s, d) in [
            ("cpu", DeviceKind::Cpu),
            ("cuda", DeviceKind::Cuda(0)),
            ("cuda:3", DeviceKind::Cuda(3)),
        ] {
            assert_eq!(s.parse::<DeviceKind>().unwrap(), d);
            assert_eq!(d.to_string(), s);
        }
        assert_eq!("cuda:0".parse::<DeviceKind>().unwrap().to_string(), "cuda");
        assert!("gpu".parse::<DeviceKind>().unwrap_err().contains("cuda:N"));
        assert!("cuda:x".parse::<DeviceKind>().is_err());
    }

    #[test]
    fn the_driver_probe_answers_without_panicking() {
        // On a machine without a driver (CI) the answer names libcuda; with one, it is a
        // count, and an index past it is refused with the count.
        match cuda_device_count() {
            Err(why) => {
                assert!(why.contains("CUDA driver"), "{why}");
                let e = check(&[DeviceKind::Cuda(0)]).unwrap_err();
                assert!(e.contains("device = \"cuda\"") && e.contains("cpu"), "{e}");
            }
            Ok(n) => {
                let e = check(&[DeviceKind::Cuda(0), DeviceKind::Cuda(n)]).unwrap_err();
                assert!(e.contains(&format!("{n} CUDA device")), "{e}");
            }
        }
        assert!(check(&[DeviceKind::Cpu, DeviceKind::Cpu]).is_ok());
    }
}
