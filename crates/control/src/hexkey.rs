//! Key material written as hex, the way operators paste it: an optional
//! `0x`, optional `:` or space separators (ipsec-secgw writes `de:ad:be:ef`);
//! and 32-bit numbers (SPIs) in decimal or `0x` hex.

/// A 32-bit number written in decimal or with a `0x` (or `0X`) prefix in
/// hex, spaces around it allowed.
pub fn parse_u32(text: &str) -> Option<u32> {
    let t = text.trim();
    match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(h) => u32::from_str_radix(h, 16).ok(),
        None => t.parse().ok(),
    }
}

/// Parses hex key material.
pub fn parse_hex(text: &str) -> Result<Vec<u8>, String> {
    let t = text.trim();
    let t = t
        .strip_prefix("0x")
        .or_else(|| t.strip_prefix("0X"))
        .unwrap_or(t);
    let digits: String = t
        .chars()
        .filter(|c| !matches!(c, ':' | ' ' | '\n' | '\t'))
        .collect();
    if digits.is_empty() {
        return Err("empty key".into());
    }
    if digits.len() % 2 != 0 {
        return Err(format!("odd number of hex digits ({})", digits.len()));
    }
    hex::decode(&digits).map_err(|e| format!("not hex: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        assert_eq!(parse_hex("0x0a0B").unwrap(), vec![10, 11]);
        assert_eq!(
            parse_hex("de:ad:be:ef").unwrap(),
            vec![0xde, 0xad, 0xbe, 0xef]
        );
        assert!(parse_hex("abc").is_err());
        assert!(parse_hex("zz").is_err());
        assert!(parse_hex("0x").is_err());
    }
}
