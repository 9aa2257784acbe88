//! Built-in list prices of common public models, used when the config gives
//! a model or deployment no `price`. Matched by the longest prefix of the
//! upstream model name, so dated snapshots (`gpt-4o-2024-08-06`) find their
//! family and `gpt-4o-mini` is not priced as `gpt-4o`.
//!
//! USD per million tokens (input, output, cached input), public list prices
//! as of 2025. Providers change them: set `price` in the config to be exact.

use crate::config::Price;

const TABLE: &[(&str, f64, f64, Option<f64>)] = &[
    ("gpt-4o-mini", 0.15, 0.60, Some(0.075)),
    ("gpt-4o", 2.50, 10.00, Some(1.25)),
    ("gpt-4.1-nano", 0.10, 0.40, Some(0.025)),
    ("gpt-4.1-mini", 0.40, 1.60, Some(0.10)),
    ("gpt-4.1", 2.00, 8.00, Some(0.50)),
    ("gpt-4-turbo", 10.00, 30.00, None),
    ("gpt-3.5-turbo", 0.50, 1.50, None),
    ("o1-mini", 1.10, 4.40, Some(0.55)),
    ("o1", 15.00, 60.00, Some(7.50)),
    ("o3-mini", 1.10, 4.40, Some(0.55)),
    ("o4-mini", 1.10, 4.40, Some(0.275)),
    ("text-embedding-3-small", 0.02, 0.0, None),
    ("text-embedding-3-large", 0.13, 0.0, None),
    ("text-embedding-ada-002", 0.10, 0.0, None),
    ("claude-3-5-haiku", 0.80, 4.00, Some(0.08)),
    ("claude-3-5-sonnet", 3.00, 15.00, Some(0.30)),
    ("claude-3-7-sonnet", 3.00, 15.00, Some(0.30)),
    ("claude-sonnet-4", 3.00, 15.00, Some(0.30)),
    ("claude-3-opus", 15.00, 75.00, Some(1.50)),
    ("claude-opus-4", 15.00, 75.00, Some(1.50)),
    ("claude-3-haiku", 0.25, 1.25, Some(0.03)),
    ("gemini-2.0-flash", 0.10, 0.40, Some(0.025)),
    ("gemini-1.5-flash", 0.075, 0.30, None),
    ("gemini-1.5-pro", 1.25, 5.00, None),
    ("gemini-2.5-flash", 0.30, 2.50, Some(0.075)),
    ("gemini-2.5-pro", 1.25, 10.00, Some(0.31)),
];

/// The list price of an upstream model name, if it is one we know.
pub fn builtin(model: &str) -> Option<Price> {
    // Strip an organisation prefix such as `openai/gpt-4o`.
    let name = model.rsplit('/').next().unwrap_or(model);
    TABLE
        .iter()
        .filter(|(prefix, ..)| name.starts_with(prefix))
        .max_by_key(|(prefix, ..)| prefix.len())
        .map(|&(_, i, o, c)| Price { input_per_mtok: i, output_per_mtok: o, cached_input_per_mtok: c })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_prefix_wins() {
        assert_eq!(builtin("gpt-4o-2024-08-06").unwrap().input_per_mtok, 2.50);
        assert_eq!(builtin("gpt-4o-mini-2024-07-18").unwrap().input_per_mtok, 0.15);
        assert_eq!(builtin("openai/gpt-4.1-mini").unwrap().output_per_mtok, 1.60);
        assert!(builtin("llama-3.3-70b").is_none());
        assert!(builtin("mock-1").is_none());
    }
}
