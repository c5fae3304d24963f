//! Inputs for the fuzz targets: random bytes, and real files changed by a few mutations (bytes
//! flipped, cut, repeated; for JSON, a value swapped for an extreme one), as proptest
//! strategies so that a failing input shrinks to a small one.

use proptest::collection::vec;
use proptest::prelude::*;
use serde_json::{Map, Number, Value};

/// One edit: a kind, two numbers that pick where and how, and a few bytes to insert.
pub type Edit = (u8, u32, u32, Vec<u8>);

fn edits(max: usize) -> impl Strategy<Value = Vec<Edit>> {
    vec(
        (
            any::<u8>(),
            any::<u32>(),
            any::<u32>(),
            vec(any::<u8>(), 0..8),
        ),
        1..=max,
    )
}

/// Byte strings that look like text: words, spaces, line ends of every kind, NUL, bytes that
/// are not UTF-8, and characters of 2 to 4 bytes.
pub fn texty_bytes(max_len: usize) -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        6 => prop::sample::select(vec!["the", "cat", "a", "b", "word", "é", "日本", "🙂", "<unk>", "<eos>"])
            .prop_map(|w| w.as_bytes().to_vec()),
        4 => prop::sample::select(vec![" ", "  ", "\t", "\n", "\r\n", "\r", "\n\n", " \n "])
            .prop_map(|w| w.as_bytes().to_vec()),
        1 => prop::sample::select(vec![0u8, 0xff, 0xc3, 0xe2, 0x80, 0x7f]).prop_map(|b| vec![b]),
        1 => vec(any::<u8>(), 1..4),
    ];
    vec(piece, 0..max_len).prop_map(|pieces| pieces.concat())
}

/// `seed` with 1 to 6 byte edits, or random bytes now and then.
pub fn mutated_bytes(seed: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        8 => edits(6).prop_map(move |e| apply_byte_edits(&seed, &e)),
        1 => vec(any::<u8>(), 0..64),
    ]
}

/// `seed` (a JSON document) with 1 to 4 values replaced, removed or repeated; byte edits and
/// random bytes now and then.
pub fn mutated_json(seed: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    let parsed: Option<Value> = serde_json::from_slice(&seed).ok();
    let bytes = seed.clone();
    prop_oneof![
        6 => edits(4).prop_map(move |e| match &parsed {
            Some(value) => apply_json_edits(value.clone(), &e),
            None => apply_byte_edits(&seed, &e),
        }),
        2 => edits(4).prop_map(move |e| apply_byte_edits(&bytes, &e)),
        1 => vec(any::<u8>(), 0..64),
    ]
}

/// Values that break code which trusts numbers: zero, signs, powers of two at type edges.
const EXTREMES: [&str; 18] = [
    "0",
    "1",
    "-1",
    "2",
    "255",
    "256",
    "65536",
    "2147483647",
    "4294967295",
    "4294967296",
    "9007199254740993",
    "18446744073709551615",
    "-9223372036854775808",
    "1e308",
    "-1e308",
    "0.5",
    "1e-310",
    "100000000",
];

fn extreme(k: u32) -> Value {
    let text = EXTREMES[k as usize % EXTREMES.len()];
    serde_json::from_str(text).unwrap_or(Value::Null)
}

/// Applies byte edits to a copy of `seed`.
pub fn apply_byte_edits(seed: &[u8], edits: &[Edit]) -> Vec<u8> {
    let mut out = seed.to_vec();
    for (kind, a, b, bytes) in edits {
        let at = |len: usize| if len == 0 { 0 } else { *a as usize % len };
        match kind % 7 {
            0 if !out.is_empty() => {
                let i = at(out.len());
                out[i] ^= 1 << (b % 8);
            }
            1 if !out.is_empty() => {
                let i = at(out.len());
                out[i] = *b as u8;
            }
            2 => {
                let i = at(out.len() + 1);
                out.splice(i..i, bytes.iter().copied());
            }
            3 if !out.is_empty() => {
                let i = at(out.len());
                let end = (i + 1 + *b as usize % 64).min(out.len());
                out.drain(i..end);
            }
            4 => {
                let i = at(out.len() + 1);
                out.truncate(i);
            }
            5 if !out.is_empty() => {
                // Repeat a stretch (long tokens, long lines, many entries).
                let i = at(out.len());
                let end = (i + 1 + *b as usize % 32).min(out.len());
                let stretch = out[i..end].to_vec();
                let times = 1 + (*b as usize >> 8) % 64;
                for _ in 0..times {
                    out.splice(end..end, stretch.iter().copied());
                }
            }
            6 => {
                // An extreme number written over a digit run or inserted.
                let i = at(out.len() + 1);
                let digits = out[i..].iter().take_while(|c| c.is_ascii_digit()).count();
                let text = EXTREMES[*b as usize % EXTREMES.len()].as_bytes();
                out.splice(i..i + digits, text.iter().copied());
            }
            _ => {}
        }
    }
    out
}

/// Applies JSON edits to `value` and serializes it.
pub fn apply_json_edits(mut value: Value, edits: &[Edit]) -> Vec<u8> {
    for (kind, a, b, bytes) in edits {
        let count = count_nodes(&value);
        let Some(node) = nth_node(&mut value, *a as usize % count) else {
            continue;
        };
        match kind % 9 {
            0..=2 => *node = extreme(*b),
            3 => *node = Value::String(String::from_utf8_lossy(bytes).into_owned()),
            4 => {
                *node = match b % 4 {
                    0 => Value::Null,
                    1 => Value::Bool((b & 4) != 0),
                    2 => Value::Array(Vec::new()),
                    _ => Value::Object(Map::new()),
                }
            }
            5 => match node {
                Value::Object(map) if !map.is_empty() => {
                    let key = map.keys().nth(*b as usize % map.len()).cloned();
                    if let Some(key) = key {
                        map.remove(&key);
                    }
                }
                Value::Array(items) if !items.is_empty() => {
                    items.remove(*b as usize % items.len());
                }
                _ => *node = Value::Null,
            },
            6 => match node {
                Value::Array(items) if !items.is_empty() => {
                    let item = items[*b as usize % items.len()].clone();
                    let times = 1 + (*b as usize >> 8) % 16;
                    items.extend(std::iter::repeat_n(item, times));
                }
                Value::Object(map) => {
                    let key = String::from_utf8_lossy(bytes).into_owned();
                    map.insert(key, extreme(*b));
                }
                _ => *node = extreme(*b),
            },
            7 => {
                if let Value::Number(n) = node {
                    // Near the value: off by one either way, or negated.
                    let v = n.as_f64().unwrap_or(0.0);
                    let changed = match b % 3 {
                        0 => v + 1.0,
                        1 => v - 1.0,
                        _ => -v,
                    };
                    *node = Number::from_f64(changed).map_or(Value::Null, |n| {
                        if changed.fract() == 0.0 && changed.abs() < 9e15 {
                            Value::from(changed as i64)
                        } else {
                            Value::Number(n)
                        }
                    });
                } else if let Value::String(s) = node {
                    s.push_str(&String::from_utf8_lossy(bytes));
                }
            }
            _ => {
                if let Value::String(s) = node {
                    let cut = (*b as usize).min(s.len());
                    let cut = (0..=cut)
                        .rev()
                        .find(|&i| s.is_char_boundary(i))
                        .unwrap_or(0);
                    s.truncate(cut);
                }
            }
        }
    }
    serde_json::to_vec_pretty(&value).unwrap_or_default()
}

fn count_nodes(value: &Value) -> usize {
    1 + match value {
        Value::Array(items) => items.iter().map(count_nodes).sum(),
        Value::Object(map) => map.values().map(count_nodes).sum(),
        _ => 0,
    }
}

/// The `n`th node in depth-first order, the root being 0.
fn nth_node(value: &mut Value, n: usize) -> Option<&mut Value> {
    if n == 0 {
        return Some(value);
    }
    let mut rest = n - 1;
    let children: Vec<&mut Value> = match value {
        Value::Array(items) => items.iter_mut().collect(),
        Value::Object(map) => map.values_mut().collect(),
        _ => return None,
    };
    for child in children {
        let size = count_nodes(child);
        if rest < size {
            return nth_node(child, rest);
        }
        rest -= size;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_edits_reach_every_node() {
        let value: Value = serde_json::from_str(r#"{"a": [1, {"b": 2}], "c": "x"}"#).unwrap();
        let count = count_nodes(&value);
        assert_eq!(count, 6);
        for n in 0..count {
            // Edit kind 0 writes EXTREMES[b]: b = 10 is 2^53 + 1.
            let out = apply_json_edits(value.clone(), &[(0, n as u32, 10, Vec::new())]);
            assert!(String::from_utf8(out).unwrap().contains("9007199254740993"));
        }
    }

    #[test]
    fn byte_edits_stay_in_bounds() {
        for kind in 0..7u8 {
            for a in [0u32, 1, 5, u32::MAX] {
                for seed in [&b""[..], b"x", b"123 abc"] {
                    let _ = apply_byte_edits(seed, &[(kind, a, u32::MAX, vec![1, 2])]);
                }
            }
        }
    }
}
