//! How many cases a randomised test runs: the CI slice by default, more for a long local run
//! from an environment variable (each test names its own, listed in the README).

/// The value of the environment variable `name` as a count, or `default` when it is unset
/// or not a number.
pub fn from_env(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}
