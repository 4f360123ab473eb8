//! The small `--flag value` command-line parsing of the benchmark binaries
//! (`keel-peers`), so flags and error messages behave alike.

/// Calls `apply(flag, value)` for each `--flag value` pair of the command line, in order.
/// `Err(usage)` on `--help` or `-h`, an error naming the flag when its value is missing, and
/// the first error `apply` returns (an unknown flag, a bad value).
pub fn parse_flags(
    usage: &str,
    mut apply: impl FnMut(&str, &str) -> Result<(), String>,
) -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--help" || flag == "-h" {
            return Err(usage.to_string());
        }
        let value = args
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{usage}"))?;
        apply(&flag, &value)?;
    }
    Ok(())
}

/// A whole-number flag value; `_` may separate digits (`10_000_000`). The error names the
/// flag and ends with `usage`.
pub fn number(flag: &str, value: &str, usage: &str) -> Result<u64, String> {
    value
        .replace('_', "")
        .parse::<u64>()
        .map_err(|err| format!("{flag} {value}: {err}\n{usage}"))
}

/// A flag value as a `usize` (it fits on every supported platform; the error says so if not).
pub fn as_usize(value: u64) -> Result<usize, String> {
    usize::try_from(value).map_err(|err| err.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_take_underscores_and_name_the_flag_when_bad() {
        assert_eq!(number("--commands", "10_000", "usage"), Ok(10_000));
        assert_eq!(
            number("--commands", "1_0x", "usage"),
            Err("--commands 1_0x: invalid digit found in string\nusage".to_string())
        );
    }
}
