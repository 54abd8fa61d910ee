//! Errors that point into a pipeline file: `file:line:col`, the offending line
//! and a caret under the exact span, like rustc and cargo print them.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

/// A pipeline file's name and text, shared by every diagnostic about it.
#[derive(Debug)]
pub struct SourceFile {
    /// Path as the user gave it.
    pub name: String,
    /// Full text.
    pub text: String,
}

impl SourceFile {
    /// Wrap a file's name and text.
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Arc<Self> {
        Arc::new(SourceFile {
            name: name.into(),
            text: text.into(),
        })
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let col = self.text[line_start..offset].chars().count() + 1;
        (line, col)
    }

    fn line_text(&self, line: usize) -> &str {
        self.text.lines().nth(line - 1).unwrap_or("")
    }
}

/// One problem found in a pipeline.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostic {
    /// What is wrong, as one sentence.
    pub message: String,
    /// Where, as a byte range of the file (`None`: not tied to a place, e.g. a
    /// `--set` flag or a missing top-level key).
    pub span: Option<Range<usize>>,
    /// Short text printed under the caret.
    pub label: Option<String>,
    /// How to fix it (one line each).
    pub help: Vec<String>,
}

impl Diagnostic {
    /// A problem at `span`.
    pub fn at(span: Option<Range<usize>>, message: impl Into<String>) -> Self {
        Diagnostic {
            message: message.into(),
            span,
            label: None,
            help: Vec::new(),
        }
    }

    /// Add the caret label.
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    /// Add a hint.
    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help.push(help.into());
        self
    }

    /// Add "did you mean" for the closest of `candidates`, if any is close.
    pub fn suggest<'a>(self, given: &str, candidates: impl IntoIterator<Item = &'a str>) -> Self {
        match closest(given, candidates) {
            Some(best) => self.help(format!("did you mean `{best}`?")),
            None => self,
        }
    }
}

/// Every problem found in one pipeline file.
#[derive(Debug, Clone)]
pub struct Diagnostics {
    /// The file they are about.
    pub file: Arc<SourceFile>,
    /// In file order.
    pub items: Vec<Diagnostic>,
}

impl Diagnostics {
    /// 1-based (line, column) of each diagnostic that has a span, in order.
    pub fn locations(&self) -> Vec<(usize, usize)> {
        self.items
            .iter()
            .filter_map(|d| d.span.as_ref().map(|s| self.file.line_col(s.start)))
            .collect()
    }

    /// Find the diagnostic whose message contains `needle`.
    pub fn find(&self, needle: &str) -> Option<&Diagnostic> {
        self.items.iter().find(|d| d.message.contains(needle))
    }

    /// (line, column) of a diagnostic.
    pub fn location_of(&self, d: &Diagnostic) -> Option<(usize, usize)> {
        d.span.as_ref().map(|s| self.file.line_col(s.start))
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.items.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            writeln!(f, "error: {}", d.message)?;
            match &d.span {
                Some(span) => {
                    let (line, col) = self.file.line_col(span.start);
                    let gutter = line.to_string().len();
                    let pad = " ".repeat(gutter);
                    writeln!(f, "{pad}--> {}:{line}:{col}", self.file.name)?;
                    writeln!(f, "{pad} |")?;
                    let text = self.file.line_text(line);
                    writeln!(f, "{line} | {text}")?;
                    // Underline to the end of the span or of the line.
                    let (end_line, end_col) = self.file.line_col(span.end.max(span.start + 1));
                    let width = if end_line == line {
                        end_col.saturating_sub(col).max(1)
                    } else {
                        text.chars().count().saturating_sub(col - 1).max(1)
                    };
                    let label = d.label.as_deref().map(|l| format!(" {l}")).unwrap_or_default();
                    writeln!(f, "{pad} | {}{}{label}", " ".repeat(col - 1), "^".repeat(width))?;
                }
                None => writeln!(f, " --> {}", self.file.name)?,
            }
            for help in &d.help {
                writeln!(f, " = help: {help}")?;
            }
        }
        let n = self.items.len();
        write!(
            f,
            "\n{} problem{} in {}",
            n,
            if n == 1 { "" } else { "s" },
            self.file.name
        )
    }
}

impl std::error::Error for Diagnostics {}

/// Levenshtein distance (for "did you mean").
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The candidate closest to `given`, if within a third of its length.
pub fn closest<'a>(given: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (given.chars().count() / 3).max(1) + 1;
    candidates
        .into_iter()
        .map(|c| (distance(given, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_are_one_based_and_count_characters() {
        let f = SourceFile::new("p.toml", "a = 1\nné = \"x\"\n");
        assert_eq!(f.line_col(0), (1, 1));
        assert_eq!(f.line_col(6), (2, 1));
        // `=` after the two-byte é is the 4th character of line 2.
        assert_eq!(f.line_col(10), (2, 4));
    }

    #[test]
    fn render_points_at_the_span() {
        let f = SourceFile::new("p.toml", "[stages.a]\nusse = \"x\"\n");
        let d = Diagnostics {
            file: f,
            items: vec![Diagnostic::at(Some(11..15), "unknown field `usse`").suggest("usse", ["uses", "inputs"])],
        };
        let text = d.to_string();
        assert!(text.contains("--> p.toml:2:1"), "{text}");
        assert!(text.contains("2 | usse = \"x\""), "{text}");
        assert!(text.contains("  | ^^^^"), "{text}");
        assert!(text.contains("did you mean `uses`?"), "{text}");
    }

    #[test]
    fn suggestions_only_when_close() {
        assert_eq!(closest("inptus", ["inputs", "with"]), Some("inputs"));
        assert_eq!(closest("zzz", ["inputs", "with"]), None);
    }
}
