//! Stop strings in streamed text: a piece is released as soon as it can no longer be the
//! start of a stop string, so streaming output never shows a stop string, nor takes one back.

/// Watches generated text for any of a set of stop strings.
#[derive(Debug, Clone, Default)]
pub struct StopText {
    stops: Vec<String>,
    held: String,
    stopped: bool,
}

impl StopText {
    /// Watches for `stops` (empty strings are ignored).
    pub fn new(stops: &[String]) -> Self {
        StopText {
            stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(),
            held: String::new(),
            stopped: false,
        }
    }

    /// Appends `piece`; returns the text that can be shown now and whether a stop string has
    /// ended the text. The stop string and anything after it are never shown.
    pub fn push(&mut self, piece: &str) -> (String, bool) {
        if self.stopped {
            return (String::new(), true);
        }
        self.held.push_str(piece);
        let first_stop = self
            .stops
            .iter()
            .filter_map(|s| self.held.find(s.as_str()))
            .min();
        if let Some(at) = first_stop {
            let shown = self.held[..at].to_string();
            self.held.clear();
            self.stopped = true;
            return (shown, true);
        }
        let cut = self.held.len() - self.longest_partial_stop();
        let shown = self.held[..cut].to_string();
        self.held.drain(..cut);
        (shown, false)
    }

    /// The text still held back (the end of the text was reached with no stop string).
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.held)
    }

    /// Whether a stop string was seen.
    pub fn stopped(&self) -> bool {
        self.stopped
    }

    /// Bytes at the end of the held text that begin some stop string (and so must wait).
    fn longest_partial_stop(&self) -> usize {
        self.stops
            .iter()
            .filter_map(|s| {
                (1..s.len())
                    .rev()
                    .filter(|&k| s.is_char_boundary(k))
                    .find(|&k| self.held.ends_with(&s[..k]))
            })
            .max()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], pieces: &[&str]) -> (String, bool) {
        let stops: Vec<String> = stops.iter().map(|s| s.to_string()).collect();
        let mut st = StopText::new(&stops);
        let mut shown = String::new();
        for p in pieces {
            let (s, stop) = st.push(p);
            shown.push_str(&s);
            if stop {
                return (shown, true);
            }
        }
        shown.push_str(&st.finish());
        (shown, false)
    }

    #[test]
    fn a_stop_string_split_across_pieces_is_never_shown() {
        assert_eq!(
            run(&["\n\n"], &["one", "\n", "\n", "two"]),
            ("one".into(), true)
        );
        assert_eq!(run(&["END"], &["aE", "N", "Dz"]), ("a".into(), true));
    }

    #[test]
    fn a_partial_match_that_fails_is_released() {
        let stops = vec!["abc".to_string()];
        let mut st = StopText::new(&stops);
        assert_eq!(st.push("xab"), ("x".into(), false));
        assert_eq!(st.push("x"), ("abx".into(), false));
        assert_eq!(run(&["abc"], &["ab"]), ("ab".into(), false));
    }

    #[test]
    fn the_earliest_of_several_stops_wins_and_multibyte_text_is_cut_on_boundaries() {
        assert_eq!(run(&["。", "b"], &["甲b乙。"]), ("甲".into(), true));
        assert_eq!(
            run(&["。。"], &["春眠", "。", "不觉"]),
            ("春眠。不觉".into(), false)
        );
        assert_eq!(run(&[], &["a", "b"]), ("ab".into(), false));
        assert_eq!(run(&[""], &["a"]), ("a".into(), false));
    }
}
