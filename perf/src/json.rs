//! Reading result files back: serde_json writes a non-finite `f64` (NaN, ±∞: a median over
//! no runs, a failover that never recovered) as `null`, which a plain `f64` refuses. The
//! result types read their `f64` fields through these, so a file reads back as it was
//! written, with `null` as NaN.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};

/// An `f64`, `null` read as NaN.
pub fn f64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(deserializer)?.unwrap_or(f64::NAN))
}

/// A list of `f64`, each `null` read as NaN.
pub fn f64s<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<f64>, D::Error> {
    let values = Vec::<Option<f64>>::deserialize(deserializer)?;
    Ok(values.into_iter().map(|v| v.unwrap_or(f64::NAN)).collect())
}

/// A map to `f64`, each `null` read as NaN.
pub fn f64_map<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<String, f64>, D::Error> {
    let values = BTreeMap::<String, Option<f64>>::deserialize(deserializer)?;
    Ok(values
        .into_iter()
        .map(|(k, v)| (k, v.unwrap_or(f64::NAN)))
        .collect())
}
