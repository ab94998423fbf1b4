//! Durations (`30`, `1.5`, `"500ms"`, `"2m"`) and byte sizes (`1048576`, `"8MiB"`) as
//! config files spell them.
//!
//! Numbers are read as exact decimals rather than through `f64` so that `0.1` is exactly
//! 100 ms and `1.5MiB` is exactly 1 572 864 bytes.

use std::time::Duration;

use serde_json::Value;

/// Duration units, longest suffix first so that `ms` is not read as `m` + `s`.
const DURATION_UNITS: &[(&str, u128)] = &[
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

/// Size units, compared case-insensitively; longest suffix first.
const SIZE_UNITS: &[(&str, u128)] = &[
    ("kib", 1 << 10),
    ("mib", 1 << 20),
    ("gib", 1 << 30),
    ("kb", 1_000),
    ("mb", 1_000_000),
    ("gb", 1_000_000_000),
    ("b", 1),
];

const DURATION_HELP: &str =
    "expected a number of seconds or a string such as \"500ms\", \"30s\", \"2m\" or \"1h\"";
const SIZE_HELP: &str =
    "expected a number of bytes or a string such as \"512KiB\", \"8MiB\", \"1GiB\" or \"10MB\"";

/// A non-negative decimal number: `digits / 10^scale`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Decimal {
    digits: u128,
    scale: u32,
}

// === impl Decimal ===

impl Decimal {
    /// Parses `123`, `1.5`, `.5` or `5.`; no sign, no exponent.
    fn parse(text: &str) -> Option<Self> {
        let (int, frac) = text.split_once('.').unwrap_or((text, ""));
        if int.is_empty() && frac.is_empty() {
            return None;
        }
        let mut digits: u128 = 0;
        for c in int.chars().chain(frac.chars()) {
            let d = c.to_digit(10)?;
            digits = digits.checked_mul(10)?.checked_add(u128::from(d))?;
        }
        let scale = u32::try_from(frac.len()).ok()?;
        Some(Self { digits, scale })
    }

    /// `self * unit`, rounded down; `None` on overflow.
    fn times(self, unit: u128) -> Option<u128> {
        let product = self.digits.checked_mul(unit)?;
        // 10^scale beyond u128 is larger than any product: the result rounds down to zero.
        Some(
            10u128
                .checked_pow(self.scale)
                .map_or(0, |divisor| product / divisor),
        )
    }
}

/// Splits `"1.5 MiB"` into `("1.5", "MiB")`.
fn split_unit(text: &str) -> (&str, &str) {
    let text = text.trim();
    let end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    (&text[..end], text[end..].trim_start())
}

/// A JSON number as a decimal, or an error message for negative numbers.
fn number_decimal(number: &serde_json::Number) -> Result<Decimal, &'static str> {
    if let Some(n) = number.as_u64() {
        return Ok(Decimal {
            digits: u128::from(n),
            scale: 0,
        });
    }
    if number.as_i64().is_some() {
        return Err("must be greater than zero");
    }
    let float = number.as_f64().ok_or("is not a finite number")?;
    if float < 0.0 {
        return Err("must be greater than zero");
    }
    // `f64`'s Display never uses an exponent and prints the shortest exact round-trip form.
    Decimal::parse(&format!("{float}")).ok_or("is too large")
}

/// `text` as a number with an optional unit from `units`, scaled to the base unit; a bare
/// number counts as `bare` base units. `None` when the product overflows.
fn parse_scaled(
    text: &str,
    units: &[(&str, u128)],
    bare: u128,
    help: &str,
    unit_matches: fn(&str, &str) -> bool,
) -> Result<Option<u128>, String> {
    let (number, unit) = split_unit(text);
    if number.is_empty() && text.trim_start().starts_with('-') {
        return Err("must be greater than zero".to_owned());
    }
    let factor = if unit.is_empty() {
        bare
    } else {
        units
            .iter()
            .find(|(name, _)| unit_matches(name, unit))
            .map(|(_, factor)| *factor)
            .ok_or_else(|| help.to_owned())?
    };
    let decimal = Decimal::parse(number).ok_or_else(|| help.to_owned())?;
    Ok(decimal.times(factor))
}

/// A duration from a string: a bare number means seconds.
pub(super) fn parse_duration(text: &str) -> Result<Duration, String> {
    let nanos = parse_scaled(
        text,
        DURATION_UNITS,
        1_000_000_000,
        DURATION_HELP,
        |a, b| a == b,
    )?;
    nanos_to_duration(nanos)
}

fn nanos_to_duration(nanos: Option<u128>) -> Result<Duration, String> {
    match nanos.map(u64::try_from) {
        Some(Ok(0)) => Err("must be greater than zero".to_owned()),
        Some(Ok(nanos)) => Ok(Duration::from_nanos(nanos)),
        _ => Err("is too large".to_owned()),
    }
}

/// A duration from a config value: a number of seconds or a string with a unit.
pub(super) fn duration(value: &Value) -> Result<Duration, String> {
    match value {
        Value::Number(number) => {
            let decimal = number_decimal(number)?;
            nanos_to_duration(decimal.times(1_000_000_000))
        }
        Value::String(text) => parse_duration(text),
        other => Err(format!(
            "{DURATION_HELP}, found {}",
            super::fields::kind(other)
        )),
    }
}

/// A byte size from a string: a bare number means bytes; units are case-insensitive.
pub fn parse_size(text: &str) -> Result<usize, String> {
    let bytes = parse_scaled(text, SIZE_UNITS, 1, SIZE_HELP, str::eq_ignore_ascii_case)?;
    bytes_to_usize(bytes)
}

fn bytes_to_usize(bytes: Option<u128>) -> Result<usize, String> {
    match bytes.map(usize::try_from) {
        Some(Ok(0)) => Err("must be greater than zero".to_owned()),
        Some(Ok(bytes)) => Ok(bytes),
        _ => Err("is too large".to_owned()),
    }
}

/// A byte size from a config value: a whole number of bytes or a string with a unit.
pub(super) fn size(value: &Value) -> Result<usize, String> {
    match value {
        Value::Number(number) => {
            let decimal = number_decimal(number)?;
            if decimal.scale > 0 && decimal.digits % 10u128.pow(decimal.scale.min(38)) != 0 {
                return Err("expected a whole number of bytes".to_owned());
            }
            bytes_to_usize(decimal.times(1))
        }
        Value::String(text) => parse_size(text),
        other => Err(format!("{SIZE_HELP}, found {}", super::fields::kind(other))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn durations() {
        let ms = Duration::from_millis;
        let cases: &[(Value, Result<Duration, &str>)] = &[
            (json!(30), Ok(ms(30_000))),
            (json!(0.1), Ok(ms(100))),
            (json!(1.5), Ok(ms(1_500))),
            (json!("500ms"), Ok(ms(500))),
            (json!("30s"), Ok(ms(30_000))),
            (json!("2m"), Ok(ms(120_000))),
            (json!("1h"), Ok(ms(3_600_000))),
            (json!("1.5h"), Ok(ms(5_400_000))),
            (json!(" 10 s "), Ok(ms(10_000))),
            (json!("45"), Ok(ms(45_000))),
            (json!(".25s"), Ok(ms(250))),
            (json!(0), Err("must be greater than zero")),
            (json!("0s"), Err("must be greater than zero")),
            (json!(-5), Err("must be greater than zero")),
            (json!(-0.5), Err("must be greater than zero")),
            (json!("-5s"), Err("must be greater than zero")),
            (json!("0.0000000001s"), Err("must be greater than zero")),
            (json!(1e-300), Err("must be greater than zero")),
            (json!("10d"), Err(DURATION_HELP)),
            (json!("fast"), Err(DURATION_HELP)),
            (json!("s"), Err(DURATION_HELP)),
            (json!(""), Err(DURATION_HELP)),
            (json!("1.2.3s"), Err(DURATION_HELP)),
            (json!("99999999999999999999h"), Err("is too large")),
        ];
        for (value, want) in cases {
            let got = duration(value);
            assert_eq!(got, want.map_err(str::to_owned), "{value}");
        }
        assert_eq!(
            duration(&json!(true)),
            Err(format!("{DURATION_HELP}, found a boolean"))
        );
    }

    #[test]
    fn sizes() {
        let cases: &[(Value, Result<usize, &str>)] = &[
            (json!(1024), Ok(1024)),
            (json!(1024.0), Ok(1024)),
            (json!("1024"), Ok(1024)),
            (json!("512B"), Ok(512)),
            (json!("1KiB"), Ok(1024)),
            (json!("8MiB"), Ok(8 << 20)),
            (json!("8 mib"), Ok(8 << 20)),
            (json!("1.5MiB"), Ok(1_572_864)),
            (json!("2GiB"), Ok(2 << 30)),
            (json!("10KB"), Ok(10_000)),
            (json!("3MB"), Ok(3_000_000)),
            (json!("1GB"), Ok(1_000_000_000)),
            (json!(0), Err("must be greater than zero")),
            (json!("0MiB"), Err("must be greater than zero")),
            (json!(-1), Err("must be greater than zero")),
            (json!(1.5), Err("expected a whole number of bytes")),
            (json!("8 megs"), Err(SIZE_HELP)),
            (json!("MiB"), Err(SIZE_HELP)),
            (json!("99999999999999999999999999GiB"), Err("is too large")),
        ];
        for (value, want) in cases {
            let got = size(value);
            assert_eq!(got, want.map_err(str::to_owned), "{value}");
        }
        assert_eq!(size(&json!([])), Err(format!("{SIZE_HELP}, found a list")));
    }

    #[test]
    fn decimals() {
        let cases = [
            ("12", Some((12, 0))),
            ("1.50", Some((150, 2))),
            (".5", Some((5, 1))),
            ("5.", Some((5, 0))),
            (".", None),
            ("", None),
            ("1e3", None),
            ("+1", None),
        ];
        for (text, want) in cases {
            let got = Decimal::parse(text).map(|d| (d.digits, d.scale));
            assert_eq!(got, want, "{text}");
        }
    }
}
