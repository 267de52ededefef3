//! HTML escaped by type. An [`Html`] value is built only from trusted literals (`&'static str`,
//! written in this crate) and from text that is escaped on the way in, so no call site can forget
//! to escape: a `String` pushed into a page always comes out as text.
//!
//! ```
//! use storeguard::web::html::Html;
//! let mut page = Html::raw("<p>");
//! storeguard::html!(page, "<b>{}</b> has {} stores", "<script>", 3);
//! page.raw_str("</p>");
//! assert_eq!(page.as_str(), "<p><b>&lt;script&gt;</b> has 3 stores</p>");
//! ```

/// Appends `s` to `out`, escaped for element content and quoted attribute values.
pub fn escape_into(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
}

/// `s` escaped for element content and quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    escape_into(&mut out, s);
    out
}

/// Markup that is safe to send: trusted literals plus escaped text.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Html(String);

/// Something that can go into a page: text is escaped, [`Html`] goes in as it is.
pub trait Fragment {
    fn write_to(&self, out: &mut String);
}

impl Fragment for str {
    fn write_to(&self, out: &mut String) {
        escape_into(out, self);
    }
}

impl Fragment for String {
    fn write_to(&self, out: &mut String) {
        escape_into(out, self);
    }
}

impl Fragment for Html {
    fn write_to(&self, out: &mut String) {
        out.push_str(&self.0);
    }
}

impl<T: Fragment + ?Sized> Fragment for &T {
    fn write_to(&self, out: &mut String) {
        (**self).write_to(out);
    }
}

macro_rules! numbers {
    ($($t:ty),*) => {$(
        impl Fragment for $t {
            fn write_to(&self, out: &mut String) {
                use std::fmt::Write as _;
                let _ = write!(out, "{self}");
            }
        }
    )*};
}
numbers!(u8, u16, u32, u64, usize, i32, i64);

impl Html {
    pub fn new() -> Html {
        Html::default()
    }

    pub fn with_capacity(n: usize) -> Html {
        Html(String::with_capacity(n))
    }

    /// A trusted literal, taken as markup.
    pub fn raw(s: &'static str) -> Html {
        Html(s.to_string())
    }

    /// Text, escaped.
    pub fn text(s: &str) -> Html {
        Html(escape(s))
    }

    /// Appends a trusted literal.
    pub fn raw_str(&mut self, s: &'static str) -> &mut Html {
        self.0.push_str(s);
        self
    }

    /// Appends text (escaped) or markup.
    pub fn push<F: Fragment + ?Sized>(&mut self, f: &F) -> &mut Html {
        f.write_to(&mut self.0);
        self
    }

    /// Appends `template` with each `{}` replaced by the next of `args` (escaped unless it is
    /// [`Html`]). Only `{}` is a placeholder; anything else in the template is taken as it is.
    pub fn put(&mut self, template: &'static str, args: &[&dyn Fragment]) -> &mut Html {
        let mut args = args.iter();
        let mut pieces = template.split("{}");
        if let Some(first) = pieces.next() {
            self.0.push_str(first);
        }
        for piece in pieces {
            match args.next() {
                Some(a) => a.write_to(&mut self.0),
                None => debug_assert!(false, "too few arguments for {template:?}"),
            }
            self.0.push_str(piece);
        }
        debug_assert!(args.next().is_none(), "too many arguments for {template:?}");
        self
    }

    /// `items` joined by the literal `sep`.
    pub fn join<F: Fragment>(items: impl IntoIterator<Item = F>, sep: &'static str) -> Html {
        let mut out = Html::new();
        for (i, item) in items.into_iter().enumerate() {
            if i > 0 {
                out.raw_str(sep);
            }
            out.push(&item);
        }
        out
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// Appends to an [`Html`]: `html!(out, "<td>{}</td>", value)`. The template must be a literal;
/// each `{}` takes the next argument, escaped unless it is [`Html`].
#[macro_export]
macro_rules! html {
    ($out:expr, $template:literal $(, $arg:expr)* $(,)?) => {{
        $out.put($template, &[$(&$arg as &dyn $crate::web::html::Fragment),*]);
    }};
}

/// A new [`Html`] from a template: `markup!("<b>{}</b>", name)`.
#[macro_export]
macro_rules! markup {
    ($template:literal $(, $arg:expr)* $(,)?) => {{
        let mut out = $crate::web::html::Html::new();
        out.put($template, &[$(&$arg as &dyn $crate::web::html::Fragment),*]);
        out
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_and_markup_is_not() {
        let inner = markup!("<i>{}</i>", "a&b");
        let mut out = Html::raw("<p title=\"");
        html!(
            out,
            "{}\">{} {} {}",
            "\"'",
            inner,
            42usize,
            String::from("<x>")
        );
        assert_eq!(
            out.as_str(),
            "<p title=\"&quot;&#39;\"><i>a&amp;b</i> 42 &lt;x&gt;"
        );
    }

    #[test]
    fn only_empty_braces_are_placeholders() {
        let out = markup!("{x} {}", "<");
        assert_eq!(out.as_str(), "{x} &lt;");
    }

    #[test]
    fn join_escapes_each_item() {
        assert_eq!(Html::join(["<a>", "b"], ", ").as_str(), "&lt;a&gt;, b");
    }
}
