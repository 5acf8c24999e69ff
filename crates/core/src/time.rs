//! Time as data: the core never reads a clock, callers pass [`Timestamp`]s.

use std::fmt;

/// Nanoseconds since the Unix epoch. Signed so that differences are plain
/// subtraction and odd capture clocks (before 1970) do not wrap.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// From seconds and nanoseconds.
    pub fn from_parts(secs: i64, nanos: u32) -> Self {
        Timestamp(
            secs.saturating_mul(1_000_000_000)
                .saturating_add(nanos as i64),
        )
    }
    /// From floating seconds since the epoch.
    pub fn from_secs_f64(s: f64) -> Self {
        Timestamp((s * 1e9) as i64)
    }
    /// Seconds since the epoch, as a float (the JSON and Zeek representation).
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1e9
    }
    /// `self - earlier` in seconds (negative if `earlier` is later).
    pub fn secs_since(self, earlier: Timestamp) -> f64 {
        (self.0.saturating_sub(earlier.0)) as f64 / 1e9
    }
    /// Adds a duration in nanoseconds, saturating.
    pub fn plus_nanos(self, ns: i64) -> Self {
        Timestamp(self.0.saturating_add(ns))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.6}", self.as_secs_f64())
    }
}

/// Serialized as floating epoch seconds, the form JSON and Zeek logs use.
impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.as_secs_f64())
    }
}

impl<'de> serde::Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        f64::deserialize(d).map(Timestamp::from_secs_f64)
    }
}
