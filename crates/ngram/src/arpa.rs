//! ARPA files: writing a model in the standard backoff text format that KenLM, SRILM and
//! Python's `kenlm` load, and reading one back with the standard backoff computation (for
//! round-trip checks and for comparing with other tools).
use std::collections::HashMap;
use std::io::Write;

use crate::error::{NgramError, Result};
use crate::model::KneserNeyModel;

impl KneserNeyModel {
    /// Writes the model as ARPA: `\data\`, the counts, then `\k-grams:` sections of
    /// `log10 p <TAB> words [<TAB> log10 backoff]`, then `\end\`. `names[id]` is the text of
    /// each symbol (`<s>`, `</s>`, the tokenizer's tokens).
    ///
    /// # Errors
    /// [`NgramError::Arpa`] when a symbol's name is empty, holds whitespace (ARPA separates
    /// words by whitespace) or repeats another's; write errors come
    /// back as [`NgramError::WriteArpa`] with the cause.
    pub fn write_arpa(&self, names: &[String], out: &mut dyn Write) -> Result<()> {
        let symbols = self.symbols();
        let listed = |id: u32| !symbols.excluded.contains(&id);
        let mut seen = HashMap::new();
        for id in (0..symbols.len()).filter(|&id| listed(id)) {
            let name = names.get(id as usize).map(String::as_str).unwrap_or("");
            if name.is_empty() || name.chars().any(char::is_whitespace) {
                return Err(NgramError::Arpa(format!(
                    "token {id} ({name:?}) is empty or holds whitespace, which ARPA cannot write: export a model whose tokens are words (--tokenizer word)"
                )));
            }
            if let Some(other) = seen.insert(name, id) {
                return Err(NgramError::Arpa(format!(
                    "tokens {other} and {id} are both written {name:?}: ARPA needs distinct words"
                )));
            }
        }
        let io = NgramError::WriteArpa;
        let counts = self.ngram_counts();
        let unigrams = (0..symbols.len()).filter(|&id| listed(id)).count();
        writeln!(out, "\\data\\").map_err(io)?;
        for (k, &n) in counts.iter().enumerate() {
            let n = if k == 0 { unigrams } else { n };
            writeln!(out, "ngram {}={n}", k + 1).map_err(io)?;
        }
        let order = self.order();
        let mut line = String::new();
        for (k, &n) in counts.iter().enumerate() {
            writeln!(out, "\n\\{}-grams:", k + 1).map_err(io)?;
            for index in 0..n as u32 {
                let gram = self.ngram(k + 1, index);
                if k == 0 && !listed(gram[0]) {
                    continue;
                }
                let (p, bo) = self.entry(k + 1, index);
                line.clear();
                line.push_str(&p.to_string());
                line.push('\t');
                for (j, &w) in gram.iter().enumerate() {
                    if j > 0 {
                        line.push(' ');
                    }
                    line.push_str(&names[w as usize]);
                }
                if k + 1 < order {
                    line.push('\t');
                    line.push_str(&bo.to_string());
                }
                line.push('\n');
                out.write_all(line.as_bytes()).map_err(io)?;
            }
        }
        writeln!(out, "\n\\end\\").map_err(io)?;
        Ok(())
    }
}

/// An ARPA file read into memory: for each order, words → (log10 p, log10 backoff).
#[derive(Debug, Clone, Default)]
pub struct ArpaModel {
    tables: Vec<HashMap<String, (f64, f64)>>,
}

impl ArpaModel {
    /// Parses ARPA text.
    ///
    /// # Errors
    /// [`NgramError::Arpa`] naming the line that cannot be read.
    pub fn parse(text: &str) -> Result<Self> {
        let mut tables: Vec<HashMap<String, (f64, f64)>> = Vec::new();
        let mut declared: Vec<usize> = Vec::new();
        let mut section: Option<usize> = None;
        let bad = |n: usize, why: &str| NgramError::Arpa(format!("line {}: {why}", n + 1));
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line == "\\data\\" {
                continue;
            }
            if line == "\\end\\" {
                break;
            }
            if let Some(rest) = line.strip_prefix("ngram ") {
                let (k, c) = rest
                    .split_once('=')
                    .ok_or_else(|| bad(n, "bad count line"))?;
                let k: usize = k.trim().parse().map_err(|_| bad(n, "bad order"))?;
                let c: usize = c.trim().parse().map_err(|_| bad(n, "bad count"))?;
                if k != declared.len() + 1 {
                    return Err(bad(n, "orders out of sequence"));
                }
                declared.push(c);
                tables.push(HashMap::with_capacity(c));
                continue;
            }
            if let Some(k) = line
                .strip_prefix('\\')
                .and_then(|l| l.strip_suffix("-grams:"))
            {
                let k: usize = k.parse().map_err(|_| bad(n, "bad section header"))?;
                if k == 0 || k > tables.len() {
                    return Err(bad(n, "section for an undeclared order"));
                }
                section = Some(k);
                continue;
            }
            let k = section.ok_or_else(|| bad(n, "an entry outside any section"))?;
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() != k + 1 && fields.len() != k + 2 {
                return Err(bad(
                    n,
                    &format!("a {k}-gram entry needs {} or {} fields", k + 1, k + 2),
                ));
            }
            // Single precision, as KenLM and SRILM store them.
            let p: f32 = fields[0].parse().map_err(|_| bad(n, "bad probability"))?;
            let bo: f32 = match fields.get(k + 1) {
                Some(b) => b.parse().map_err(|_| bad(n, "bad backoff"))?,
                None => 0.0,
            };
            tables[k - 1].insert(fields[1..=k].join(" "), (f64::from(p), f64::from(bo)));
        }
        for (k, (&d, t)) in declared.iter().zip(&tables).enumerate() {
            if d != t.len() {
                return Err(NgramError::Arpa(format!(
                    "{} {}-grams declared, {} found",
                    d,
                    k + 1,
                    t.len()
                )));
            }
        }
        if tables.is_empty() {
            return Err(NgramError::Arpa(
                "no \\data\\ counts: not an ARPA file".into(),
            ));
        }
        Ok(ArpaModel { tables })
    }

    /// The highest order.
    pub fn order(&self) -> usize {
        self.tables.len()
    }

    /// The stored (log10 p, log10 backoff) of an n-gram, if listed.
    pub fn entry(&self, words: &[&str]) -> Option<(f64, f64)> {
        self.tables
            .get(words.len().checked_sub(1)?)?
            .get(&words.join(" "))
            .copied()
    }

    /// log10 p(w | context) by the standard backoff rule: the longest listed n-gram ending in
    /// `w`, plus the backoffs of the longer contexts (0 for a context not listed). A word not
    /// in the unigrams is read as `<unk>`.
    pub fn log10_prob(&self, context: &[&str], w: &str) -> f64 {
        let w = if self.entry(&[w]).is_some() {
            w
        } else {
            "<unk>"
        };
        let keep = context.len().min(self.order().saturating_sub(1));
        let context = &context[context.len() - keep..];
        let mut backoff = 0.0;
        for start in 0..=context.len() {
            let mut gram: Vec<&str> = context[start..].to_vec();
            gram.push(w);
            if let Some((p, _)) = self.entry(&gram) {
                return p + backoff;
            }
            if let Some((_, bo)) = self.entry(&context[start..]) {
                backoff += bo;
            }
        }
        backoff + f64::from(crate::model::LOG10_ZERO)
    }

    /// log10 probabilities of each word of `<s> words </s>` after `<s>`, `</s>` last.
    pub fn sentence_log10(&self, words: &[&str]) -> Vec<f64> {
        let mut seq = vec!["<s>"];
        seq.extend_from_slice(words);
        seq.push("</s>");
        (1..seq.len())
            .map(|i| self.log10_prob(&seq[..i], seq[i]))
            .collect()
    }
}
