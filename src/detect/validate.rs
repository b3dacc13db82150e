//! Validators: checksums, dates and number plans.

use chrono::NaiveDate;

const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
const CHECK: &[u8; 11] = b"10X98765432";

/// GB 11643 18-digit resident ID: ISO 7064 MOD 11-2 check digit and a valid
/// birth date. Returns the birth date when valid.
pub fn resident_id_18(s: &str) -> Option<NaiveDate> {
    let b = s.as_bytes();
    if b.len() != 18 || !b[..17].iter().all(u8::is_ascii_digit) {
        return None;
    }
    let sum: u32 = b[..17].iter().zip(WEIGHTS).map(|(d, w)| (d - b'0') as u32 * w).sum();
    if CHECK[(sum % 11) as usize] != b[17].to_ascii_uppercase() {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s[r].parse::<u32>().ok();
    NaiveDate::from_ymd_opt(num(6..10)? as i32, num(10..12)?, num(12..14)?)
}

/// Mainland mobile number: 11 digits starting 13–19.
pub fn mobile(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 11 && b[0] == b'1' && (b'3'..=b'9').contains(&b[1]) && b.iter().all(u8::is_ascii_digit)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn id_check_digit() {
        assert!(resident_id_18("11010519491231002X").is_some());
        assert!(resident_id_18("110105194912310021").is_none());
        assert!(resident_id_18("110105201503071235").is_some());
    }
}
