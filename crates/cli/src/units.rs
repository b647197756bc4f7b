//! Durations and sizes with units, as the command line spells them.
//!
//! Both are a decimal number with an optional unit: `2s`, `500ms`, `1.5`
//! (seconds); `64K`, `16M`, `1.5G`, `4096` (bytes). Arithmetic is exact on
//! the decimal digits, so `0.1s` is 100 000 000 ns, not a float's nearest
//! neighbour. Zero, negative numbers, unknown units and anything else are
//! refused with a message that says what is accepted.

use std::time::Duration;

const DURATION_UNITS: &str = "ns, us, ms, s, m or h";
const SIZE_UNITS: &str = "B, K, M, G, T (or KiB, MiB, GiB, TiB; powers of 1024)";

/// Parses a duration: a decimal number of seconds, or a number followed by
/// `ns`, `us` (or `µs`), `ms`, `s`, `m` (or `min`) or `h`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = split_number(text, "duration", "2s, 500ms or 1.5")?;
    let scale: u128 = match unit {
        "ns" => 1,
        "us" | "µs" => 1_000,
        "ms" => 1_000_000,
        "" | "s" => 1_000_000_000,
        "m" | "min" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        _ => {
            return Err(format!(
                "unknown duration unit {unit:?}: use {DURATION_UNITS}"
            ));
        }
    };
    let nanos = number.scaled(scale).ok_or("the duration is too large")?;
    if nanos == 0 {
        return Err("the duration must be greater than zero".into());
    }
    let nanos = u64::try_from(nanos).map_err(|_| "the duration is too large")?;
    Ok(Duration::from_nanos(nanos))
}

/// Parses a size in bytes: a decimal number, optionally followed by `B`,
/// `K`, `M`, `G` or `T` (binary multiples; `KiB`, `MiB`, … and lowercase
/// are accepted too). Fractions of a byte are dropped.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let (number, unit) = split_number(text, "size", "64K, 16M, 1G or 4096")?;
    let shift = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kib" => 10,
        "m" | "mib" => 20,
        "g" | "gib" => 30,
        "t" | "tib" => 40,
        _ => return Err(format!("unknown size unit {unit:?}: use {SIZE_UNITS}")),
    };
    let bytes = number
        .scaled(1u128 << shift)
        .ok_or("the size is too large")?;
    if bytes == 0 {
        return Err("the size must be at least one byte".into());
    }
    u64::try_from(bytes).map_err(|_| "the size is too large".into())
}

/// Parses a positive whole number.
pub fn parse_count(text: &str) -> Result<u64, String> {
    if text.starts_with('-') {
        return Err("the number must not be negative".into());
    }
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("expected a positive whole number, not {text:?}"));
    }
    match text.parse::<u64>() {
        Ok(0) => Err("the number must be greater than zero".into()),
        Ok(n) => Ok(n),
        Err(_) => Err("the number is too large".into()),
    }
}

/// A non-negative decimal number, kept as its digits.
#[derive(Debug)]
struct Decimal<'a> {
    whole: &'a str,
    fraction: &'a str,
}

impl Decimal<'_> {
    /// `self × scale`, rounded down; `None` on overflow.
    fn scaled(&self, scale: u128) -> Option<u128> {
        let mut value: u128 = 0;
        for digit in self.whole.bytes() {
            value = value
                .checked_mul(10)?
                .checked_add(u128::from(digit - b'0'))?;
        }
        let mut value = value.checked_mul(scale)?;
        // Each fractional digit contributes digit × scale / 10^position;
        // summing the numerators first keeps the result exact.
        let mut numerator: u128 = 0;
        let mut denominator: u128 = 1;
        for digit in self.fraction.bytes() {
            numerator = numerator
                .checked_mul(10)?
                .checked_add(u128::from(digit - b'0'))?;
            denominator = denominator.checked_mul(10)?;
        }
        value = value.checked_add(numerator.checked_mul(scale)? / denominator)?;
        Some(value)
    }
}

/// Splits `text` into a decimal number and the unit that follows it.
fn split_number<'a>(
    text: &'a str,
    what: &str,
    examples: &str,
) -> Result<(Decimal<'a>, &'a str), String> {
    if text.starts_with('-') {
        return Err(format!("the {what} must not be negative"));
    }
    let end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(end);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let well_formed = !fraction.contains('.')
        && (!whole.is_empty() || !fraction.is_empty())
        // Longer fractions than this cannot matter and could overflow.
        && fraction.len() <= 18;
    if !well_formed {
        return Err(format!(
            "expected a {what} such as {examples}, not {text:?}"
        ));
    }
    Ok((Decimal { whole, fraction }, unit))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn durations_with_units() {
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("500ms"), Ok(ms(500)));
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration("250µs"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration("7ns"), Ok(Duration::from_nanos(7)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1min"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
    }

    #[test]
    fn bare_durations_are_seconds() {
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("1.5"), Ok(ms(1500)));
    }

    #[test]
    fn decimal_durations_are_exact() {
        assert_eq!(parse_duration("0.1"), Ok(ms(100)));
        assert_eq!(parse_duration(".25s"), Ok(ms(250)));
        assert_eq!(parse_duration("1.s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_duration("1.5ms"), Ok(Duration::from_micros(1500)));
        assert_eq!(parse_duration("0.000000001"), Ok(Duration::from_nanos(1)));
        assert_eq!(
            parse_duration("2.0000000005"),
            Ok(Duration::from_nanos(2_000_000_000))
        );
    }

    #[test]
    fn bad_durations() {
        for bad in [
            "",
            "s",
            ".",
            "-1",
            "-1s",
            "1..5",
            "1.2.3",
            "1 s",
            " 1s",
            "1sec",
            "1S",
            "x",
            "1e3",
            "1,5",
            "+1",
            "0",
            "0s",
            "0.0",
            "0.1ns",
            "0.0000000001",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(parse_duration("-2s").unwrap_err().contains("negative"));
        assert!(
            parse_duration("0")
                .unwrap_err()
                .contains("greater than zero")
        );
        assert!(parse_duration("3parsecs").unwrap_err().contains("unit"));
        assert!(
            parse_duration("99999999999999999999h")
                .unwrap_err()
                .contains("too large")
        );
    }

    #[test]
    fn sizes_with_units() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("10B"), Ok(10));
        assert_eq!(parse_size("64K"), Ok(64 << 10));
        assert_eq!(parse_size("64k"), Ok(64 << 10));
        assert_eq!(parse_size("64KiB"), Ok(64 << 10));
        assert_eq!(parse_size("16M"), Ok(16 << 20));
        assert_eq!(parse_size("16MiB"), Ok(16 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("2T"), Ok(2 << 40));
    }

    #[test]
    fn decimal_sizes() {
        assert_eq!(parse_size("1.5K"), Ok(1536));
        assert_eq!(parse_size("0.5M"), Ok(512 << 10));
        assert_eq!(parse_size("1.0001K"), Ok(1024));
        assert_eq!(parse_size("2.9"), Ok(2));
    }

    #[test]
    fn bad_sizes() {
        for bad in [
            "",
            "K",
            "-1",
            "-1K",
            "0",
            "0K",
            "0.5",
            "1KB",
            "1 K",
            "1Kb",
            "lots",
            "1.2.3M",
            "1e6",
            "99999999999T",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(parse_size("1X").unwrap_err().contains("unit"));
        assert!(parse_size("-5M").unwrap_err().contains("negative"));
        assert!(parse_size("0").unwrap_err().contains("at least one byte"));
        assert!(
            parse_size("99999999999T")
                .unwrap_err()
                .contains("too large")
        );
    }

    #[test]
    fn counts() {
        assert_eq!(parse_count("64"), Ok(64));
        for bad in ["", "0", "-1", "1.5", "ten", "1K", "99999999999999999999999"] {
            assert!(parse_count(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
