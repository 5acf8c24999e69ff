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
    ///
    /// Whole seconds and the fraction are converted apart: today's times in
    /// nanoseconds (about 1.7e18) have more digits than a float holds, so
    /// converting them whole rounded them to 256 ns first, and a capture's
    /// 1700000000.030430 came out as 1700000000.0304298.
    pub fn as_secs_f64(self) -> f64 {
        const NS: i64 = 1_000_000_000;
        self.0.div_euclid(NS) as f64 + self.0.rem_euclid(NS) as f64 / 1e9
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A capture's microsecond times read back as the same decimals
    /// (the nearest float to them), before and after 1970.
    #[test]
    fn seconds_are_the_nearest_float() {
        for (secs, nanos, text) in [
            (1_700_000_000, 30_430_000, "1700000000.03043"),
            (1_700_000_000, 21_209_000, "1700000000.021209"),
            (1_700_000_000, 999_999_000, "1700000000.999999"),
            (1_700_000_001, 0, "1700000001"),
            (0, 1_000, "0.000001"),
            (-2, 500_000_000, "-1.5"),
        ] {
            let t = Timestamp::from_parts(secs, nanos).as_secs_f64();
            assert_eq!(t, text.parse::<f64>().unwrap(), "{secs} s {nanos} ns");
        }
        // Every microsecond of one second of today's times.
        for us in 0..1_000_000u32 {
            let t = Timestamp::from_parts(1_765_000_000, us * 1000).as_secs_f64();
            let want: f64 = format!("1765000000.{us:06}").parse().unwrap();
            assert_eq!(t, want, "{us} us");
        }
    }
}
