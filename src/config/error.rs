//! Problems in a config: where, what, what to do; collected, never just the first.

use super::*;

/// No key or string in the config may hold a control character: every value ends up on a
/// terminal, in a log line or in an alert, where an escape sequence would rewrite what the
/// reader sees (and a CR or LF would forge a line).
pub(super) fn refuse_control_characters(text: &str, c: &mut Collector<'_>) {
    use toml::de::{DeTable, DeValue};
    pub(super) fn table(t: &DeTable<'_>, path: &str, c: &mut Collector<'_>) {
        for (k, v) in t {
            let key = if path.is_empty() {
                k.get_ref().to_string()
            } else {
                format!("{path}.{}", k.get_ref())
            };
            check(k.get_ref(), k.span(), &key, c);
            value(v, &key, c);
        }
    }
    pub(super) fn value(v: &Spanned<DeValue<'_>>, path: &str, c: &mut Collector<'_>) {
        match v.get_ref() {
            DeValue::String(s) => check(s, v.span(), path, c),
            DeValue::Array(a) => {
                for (i, x) in a.iter().enumerate() {
                    value(x, &format!("{path}[{i}]"), c);
                }
            }
            DeValue::Table(t) => table(t, path, c),
            _ => {}
        }
    }
    pub(super) fn check(s: &str, span: std::ops::Range<usize>, path: &str, c: &mut Collector<'_>) {
        if let Some(ch) = s.chars().find(|ch| ch.is_control()) {
            c.at(
                span,
                format!(
                    "`{}` holds a control character ({})",
                    crate::outcome::sanitize(path, 80),
                    ch.escape_unicode()
                ),
                "remove it: names, ids and settings are plain text on one line",
            );
        }
    }
    if !may_hold_control(text) {
        return;
    }
    if let Ok(doc) = DeTable::parse(text) {
        table(doc.get_ref(), "", c);
    }
}

/// Whether any key or string could hold a control character: only through an escape, a
/// multi-line string (raw line breaks) or a raw control character other than a line end (a
/// tab). Most configs have none of these, and the walk is a second parse of the whole file
/// (tens of MB for 10,000 stores).
fn may_hold_control(text: &str) -> bool {
    text.contains('\\')
        || text.contains("\"\"\"")
        || text.contains("'''")
        || text
            .chars()
            .any(|ch| ch.is_control() && ch != '\n' && ch != '\r')
}

/// Position in a file, 1-based.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub path: PathBuf,
    pub line: usize,
    pub col: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.path.display(), self.line, self.col)
    }
}

/// One problem in the config: where, what, and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub location: Option<Location>,
    pub message: String,
    pub help: String,
}

impl fmt::Display for Problem {
    /// Messages quote the config's text (and the TOML parser's excerpt of it): control
    /// characters are shown escaped, never sent to the terminal.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use crate::outcome::printable;
        match &self.location {
            Some(l) => write!(
                f,
                "{}: {}",
                printable(&l.to_string()),
                printable(&self.message)
            )?,
            None => f.write_str(&printable(&self.message))?,
        }
        if !self.help.is_empty() {
            write!(f, "\n  help: {}", printable(&self.help))?;
        }
        Ok(())
    }
}

/// Every problem found in a config file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl ConfigError {
    pub(super) fn one(
        location: Option<Location>,
        message: impl Into<String>,
        help: impl Into<String>,
    ) -> Self {
        ConfigError {
            problems: vec![Problem {
                location,
                message: message.into(),
                help: help.into(),
            }],
        }
    }
}

/// Converts byte offsets to line/column for one source text.
pub(super) struct Source<'a> {
    pub(super) path: &'a Path,
    pub(super) text: &'a str,
}

impl Source<'_> {
    pub(super) fn locate(&self, offset: usize) -> Location {
        let offset = offset.min(self.text.len());
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let col = before[line_start..].chars().count() + 1;
        Location {
            path: self.path.to_path_buf(),
            line,
            col,
        }
    }
}

pub(super) struct Collector<'a> {
    pub(super) src: Source<'a>,
    pub(super) problems: Vec<Problem>,
}

impl Collector<'_> {
    pub(super) fn at(
        &mut self,
        span: std::ops::Range<usize>,
        message: impl Into<String>,
        help: impl Into<String>,
    ) {
        let location = Some(self.src.locate(span.start));
        self.problems.push(Problem {
            location,
            message: message.into(),
            help: help.into(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::may_hold_control;

    #[test]
    fn the_second_parse_is_skipped_only_when_no_string_can_hold_a_control_character() {
        let plain =
            "[daemon]\r\nlanguage = \"en\"\n\n[[store]]\nid = \"ozon-main\"\nname = 'Main'\n";
        assert!(!may_hold_control(plain));
        for risky in [
            "name = \"a\\u001b[31mb\"\n",
            "name = \"a\\nb\"\n",
            "name = \"\"\"a\nb\"\"\"\n",
            "name = '''a\nb'''\n",
            "name = \"a\tb\"\n",
            "name = \"a\u{7f}b\"\n",
        ] {
            assert!(may_hold_control(risky), "{risky:?}");
        }
    }
}
