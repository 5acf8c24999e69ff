//! Fast text for addresses (`ip`, `ip:port` and `[ip]:port`), integers
//! and durations.
//!
//! Written by hand because it is hot: every reset is reported with four
//! addresses and named in its evidence, and going through `core::fmt`
//! (`to_string()` on `SocketAddr`) took a tenth of a whole analysis. The
//! output is exactly that of the standard library's `Display` (RFC 5952
//! for IPv6, IPv4-mapped addresses as `::ffff:a.b.c.d`); a test checks it.
//! Durations likewise: [`push_secs`] writes what `{:.N}` writes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Up to 64 bytes of ASCII text built on the stack, then appended to a
/// string or a byte buffer in one piece.
///
/// Used for the addresses of every JSON line. Pushing them character by
/// character onto a string, with a division per digit, took 325
/// instructions for an IPv4 `ip:port`; built here, from a table of octets
/// and one of digit pairs, 166 (callgrind, a loop over random addresses
/// and ports). Short numbers in evidence
/// sentences are still pushed a character at a time ([`push_u32`]), which
/// measured cheaper for them than checking and copying a buffer.
#[derive(Clone, Copy)]
pub struct Ascii {
    buf: [u8; 64],
    len: usize,
}

impl Default for Ascii {
    fn default() -> Self {
        Ascii {
            buf: [0; 64],
            len: 0,
        }
    }
}

impl Ascii {
    /// The text (always ASCII).
    #[inline]
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }

    /// The text's bytes.
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len.min(self.buf.len())]
    }

    /// Appends one ASCII byte (dropped if the buffer is full, which the
    /// texts written here never fill).
    #[inline(always)]
    fn byte(&mut self, b: u8) {
        if let Some(slot) = self.buf.get_mut(self.len) {
            *slot = b;
            self.len += 1;
        }
    }

    #[inline(always)]
    fn bytes(&mut self, s: &[u8]) {
        for &b in s {
            self.byte(b);
        }
    }

    /// The decimal digits of `n`, zeros in front up to `width` digits,
    /// written in place from the last digit back.
    #[inline]
    fn u64_width(&mut self, n: u64, width: usize) {
        let mut digits = 1;
        let mut m = n;
        while m >= 10 {
            m /= 10;
            digits += 1;
        }
        let end = self.len + digits.max(width);
        let Some(out) = self.buf.get_mut(self.len..end) else {
            return;
        };
        // Two digits at a time from a table, from the last pair back.
        let mut m = n;
        let mut k = out.len();
        while k >= 2 {
            let pair = &PAIRS[(m % 100) as usize];
            out[k - 2] = pair[0];
            out[k - 1] = pair[1];
            m /= 100;
            k -= 2;
        }
        if k == 1 {
            out[0] = b'0' + (m % 10) as u8;
        }
        self.len = end;
    }

    #[inline]
    fn ipv4(&mut self, a: Ipv4Addr) {
        let mut n = self.len;
        for o in a.octets() {
            let Some(out) = self.buf.get_mut(n..n + 4) else {
                return;
            };
            out.copy_from_slice(&OCTETS[o as usize]);
            n += OCTET_LEN[o as usize] as usize;
        }
        // Drop the last dot.
        self.len = n - 1;
    }

    fn hex(&mut self, v: u16) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut started = false;
        for shift in [12, 8, 4, 0] {
            let d = (v >> shift) & 0xf;
            if d != 0 || started || shift == 0 {
                started = true;
                self.byte(HEX[d as usize]);
            }
        }
    }

    /// RFC 5952 form, as `Ipv6Addr`'s `Display` writes it.
    fn ipv6(&mut self, a: Ipv6Addr) {
        let s = a.segments();
        if let [0, 0, 0, 0, 0, 0xffff, hi, lo] = s {
            self.bytes(b"::ffff:");
            let o = [(hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8];
            self.ipv4(Ipv4Addr::from(o));
            return;
        }
        // The longest run of two or more zero groups (the first of equals).
        let (mut best, mut best_len, mut run, mut run_len) = (0usize, 0usize, 0usize, 0usize);
        for (i, &g) in s.iter().enumerate() {
            if g == 0 {
                if run_len == 0 {
                    run = i;
                }
                run_len += 1;
                if run_len > best_len {
                    best = run;
                    best_len = run_len;
                }
            } else {
                run_len = 0;
            }
        }
        if best_len < 2 {
            best_len = 0;
            best = 8;
        }
        let mut i = 0;
        while i < 8 {
            if i == best {
                self.bytes(b"::");
                i += best_len;
                continue;
            }
            if i > 0 && i != best + best_len {
                self.byte(b':');
            }
            self.hex(s[i]);
            i += 1;
        }
    }

    #[inline]
    fn ip(&mut self, ip: IpAddr) {
        match ip {
            IpAddr::V4(a) => self.ipv4(a),
            IpAddr::V6(a) => self.ipv6(a),
        }
    }

    #[inline]
    fn socket(&mut self, s: SocketAddr) {
        match s.ip() {
            IpAddr::V4(a) => self.ipv4(a),
            IpAddr::V6(a) => {
                self.byte(b'[');
                self.ipv6(a);
                self.byte(b']');
            }
        }
        self.byte(b':');
        self.u64_width(s.port() as u64, 1);
    }
}

/// "00" to "99".
static PAIRS: [[u8; 2]; 100] = {
    let mut t = [[0u8; 2]; 100];
    let mut i = 0;
    while i < 100 {
        t[i] = [b'0' + (i / 10) as u8, b'0' + (i % 10) as u8];
        i += 1;
    }
    t
};

/// Each octet's decimal digits followed by a dot, padded to four bytes.
static OCTETS: [[u8; 4]; 256] = octet_table().0;
/// How many of [`OCTETS`]' bytes are meant (digits and the dot).
static OCTET_LEN: [u8; 256] = octet_table().1;

const fn octet_table() -> ([[u8; 4]; 256], [u8; 256]) {
    let mut t = [[0u8; 4]; 256];
    let mut len = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let v = i as u8;
        let (d, n) = if v >= 100 {
            ([b'0' + v / 100, b'0' + v / 10 % 10, b'0' + v % 10], 3)
        } else if v >= 10 {
            ([b'0' + v / 10, b'0' + v % 10, 0], 2)
        } else {
            ([b'0' + v, 0, 0], 1)
        };
        let mut k = 0;
        while k < n {
            t[i][k] = d[k];
            k += 1;
        }
        t[i][n] = b'.';
        len[i] = n as u8 + 1;
        i += 1;
    }
    (t, len)
}

/// `ip:port`, or `[ip]:port` for IPv6, on the stack (see [`Ascii`]).
#[inline]
pub fn socket_text(s: SocketAddr) -> Ascii {
    let mut t = Ascii::default();
    t.socket(s);
    t
}

/// Appends `n` in decimal.
#[inline]
pub fn push_u32(out: &mut String, n: u32) {
    push_u64_width(out, n as u64, 1);
}

/// Appends the decimal digits of `n`, zeros in front up to `width` digits.
#[inline]
fn push_u64_width(out: &mut String, n: u64, width: usize) {
    let mut buf = [b'0'; 20];
    let mut i = buf.len();
    let mut n = n;
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &d in &buf[i.min(buf.len().saturating_sub(width))..] {
        out.push(d as char);
    }
}

/// Appends `ns` nanoseconds as seconds with `decimals` digits after the
/// point (at most 9): exactly what `format!("{:.decimals$}", ns as f64 / 1e9)`
/// writes, without its cost (fixed-precision float formatting in `core::fmt`
/// falls back to big-number arithmetic for many values, a measurable share
/// of classifying a reset).
///
/// Exact by construction: below 10^15 ns the float's error is smaller than
/// the 1 ns by which the value is away from a rounding boundary, unless it
/// lies exactly on one; that case (a tie, where the float's own rounding
/// decides) and huge values go through `format!`.
pub fn push_secs(out: &mut String, ns: i64, decimals: usize) {
    push_secs_of(out, ns, decimals, ns as f64 / 1e9)
}

/// [`push_secs`] for a float `value` computed otherwise than `ns as f64 /
/// 1e9` but within a few units in the last place of it: the result is what
/// `{:.N}` writes for `value` (ties are decided by `value` itself).
pub fn push_secs_of(out: &mut String, ns: i64, decimals: usize, value: f64) {
    let d = decimals.min(9);
    let a = ns.unsigned_abs();
    let unit = 10u64.pow(9 - d as u32);
    let (q, r) = (a / unit, a % unit);
    if a >= 1_000_000_000_000_000 || (d < 9 && r == unit / 2) {
        use std::fmt::Write as _;
        let _ = write!(out, "{:.*}", d, value);
        return;
    }
    let q = q + (r > unit / 2) as u64;
    if ns < 0 {
        out.push('-');
    }
    let scale = 10u64.pow(d as u32);
    push_u64_width(out, q / scale, 1);
    if d > 0 {
        out.push('.');
        push_u64_width(out, q % scale, d);
    }
}

/// Appends an IP address.
#[inline]
pub fn push_ip(out: &mut String, ip: IpAddr) {
    let mut t = Ascii::default();
    t.ip(ip);
    out.push_str(t.as_str());
}

/// Appends `ip:port`, or `[ip]:port` for IPv6.
#[inline]
pub fn push_socket(out: &mut String, s: SocketAddr) {
    out.push_str(socket_text(s).as_str());
}

/// `ip:port`, or `[ip]:port` for IPv6, as a new string.
pub fn socket_string(s: SocketAddr) -> String {
    socket_text(s).as_str().to_string()
}

/// An IP address as a new string.
pub fn ip_string(ip: IpAddr) -> String {
    let mut out = String::with_capacity(40);
    push_ip(&mut out, ip);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secs_as_format_writes_them() {
        let mut v: Vec<i64> = vec![
            0,
            1,
            -1,
            5,
            49_999_999,
            50_000_000,
            50_000_001,
            150_000_000,
            250_000_000,
            350_000_000,
            999_999_999,
            1_000_000_000,
            -350_000_000,
            -49_999_999,
            123_456_789_012,
            999_999_999_999_999,
            1_000_000_000_000_000,
            i64::MAX,
            i64::MIN,
        ];
        // A spread of magnitudes, and every tie of every precision.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let digits = (x % 16) as u32;
            v.push((x >> 8) as i64 % 10i64.pow(digits).max(1));
        }
        for d in 0..=9u32 {
            let unit = 10i64.pow(9 - d);
            for k in 0..50 {
                v.push(k * unit + unit / 2);
            }
        }
        for ns in v {
            for d in 0..=9 {
                let mut s = String::new();
                push_secs(&mut s, ns, d);
                assert_eq!(
                    s,
                    format!("{:.*}", d, ns as f64 / 1e9),
                    "{ns} ns, {d} decimals"
                );
            }
        }
    }

    #[test]
    fn same_text_as_std() {
        let mut ips: Vec<IpAddr> = vec![
            "0.0.0.0".parse().unwrap(),
            "255.255.255.255".parse().unwrap(),
            "10.0.200.7".parse().unwrap(),
        ];
        for s in [
            "::",
            "::1",
            "1::",
            "2001:db8::1",
            "2001:db8:0:1:b0aa:e07c:874a:9033",
            "2001:db8:0:2::8",
            "1:0:0:1:0:0:0:1",
            "1:0:0:2:0:0:3:4",
            "0:1:0:1:0:1:0:1",
            "::ffff:10.1.2.3",
            "::10.1.2.3",
            "fe80::1:2",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        ] {
            ips.push(s.parse().unwrap());
        }
        // Every pattern of zero and non-zero groups.
        for mask in 0u32..256 {
            let g: Vec<u16> = (0..8)
                .map(|i| if mask & (1 << i) != 0 { 0x1a0 + i } else { 0 })
                .collect();
            ips.push(IpAddr::V6(Ipv6Addr::new(
                g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7],
            )));
        }
        for ip in ips {
            assert_eq!(ip_string(ip), ip.to_string());
            for port in [0, 80, 65535] {
                let s = SocketAddr::new(ip, port);
                assert_eq!(socket_string(s), s.to_string());
            }
        }
    }
}
