//! Quoting for every output: POSIX shell, dotenv, Python literals, URLs, `$GITHUB_ENV` and comments.

use std::fmt::Write as _;

/// A single-quoted POSIX shell word: `'` becomes `'\''`. Safe for any value in `eval`.
pub(crate) fn shell(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

/// A dotenv value, as python-dotenv reads it (the tests read it back with python-dotenv; other
/// readers differ, e.g. docker compose expands `$` inside double quotes):
/// bare when it is made of plain characters, single-quoted (literal) when it has no `'`, `\`
/// or line break, else double-quoted with `\\`, `\"`, `\n`, `\r` escapes.
pub(crate) fn dotenv(value: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_./:,@+-".contains(c);
    if !value.is_empty() && value.chars().all(plain) {
        value.to_owned()
    } else if !value.contains(['\'', '\\', '\n', '\r']) {
        format!("'{value}'")
    } else {
        let mut out = String::from("\"");
        for c in value.chars() {
            match c {
                '\\' => out.push_str(r"\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str(r"\n"),
                '\r' => out.push_str(r"\r"),
                c => out.push(c),
            }
        }
        out.push('"');
        out
    }
}

/// A Python 3 string literal in single quotes, ASCII only: quotes, backslashes and control
/// characters escaped, everything beyond ASCII as `\uXXXX`/`\UXXXXXXXX`.
pub(crate) fn python(value: &str) -> String {
    let mut out = String::from("'");
    for c in value.chars() {
        match c {
            '\\' => out.push_str(r"\\"),
            '\'' => out.push_str(r"\'"),
            '\n' => out.push_str(r"\n"),
            '\r' => out.push_str(r"\r"),
            '\t' => out.push_str(r"\t"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if c.is_ascii() => out.push(c),
            c if (c as u32) <= 0xffff => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => {
                let _ = write!(out, "\\U{:08x}", c as u32);
            }
        }
    }
    out.push('\'');
    out
}

/// Percent-encodes everything but RFC 3986 unreserved characters, for a URL's user,
/// password or path segment.
pub(crate) fn percent(value: &str) -> String {
    let mut out = String::new();
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// One `$GITHUB_ENV` entry: `NAME=value`, or for a value with a line break the
/// `NAME<<DELIMITER` form with a delimiter that is no line of the value.
pub(crate) fn github(name: &str, value: &str) -> String {
    if !value.contains(['\n', '\r']) {
        return format!("{name}={value}\n");
    }
    let mut delimiter = String::from("CITUS_EOF");
    while value.split('\n').any(|line| line == delimiter || line.strip_suffix('\r') == Some(&delimiter)) {
        delimiter.push('_');
    }
    format!("{name}<<{delimiter}\n{value}\n{delimiter}\n")
}

/// A `# ` comment line; line breaks and other control characters become spaces so nothing
/// escapes the comment.
pub(crate) fn comment(text: &str) -> String {
    let flat: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    format!("# {flat}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quotes_everything() {
        assert_eq!(shell("abc"), "'abc'");
        assert_eq!(shell(""), "''");
        assert_eq!(shell("it's"), r"'it'\''s'");
    }

    #[test]
    fn dotenv_picks_the_lightest_safe_quoting() {
        assert_eq!(dotenv("localhost:5600"), "localhost:5600");
        assert_eq!(dotenv(""), "''");
        assert_eq!(dotenv("a b#c"), "'a b#c'");
        assert_eq!(dotenv("it's\\\n\"x\""), r#""it's\\\n\"x\"""#);
    }

    #[test]
    fn python_literals_are_ascii() {
        assert_eq!(python("a'b\\c"), r"'a\'b\\c'");
        assert_eq!(python("é😀\n\u{7}"), r"'\u00e9\U0001f600\n\x07'");
    }

    #[test]
    fn percent_encoding() {
        assert_eq!(percent("a b@c:d/é~"), "a%20b%40c%3Ad%2F%C3%A9~");
    }

    #[test]
    fn github_heredoc_avoids_the_value() {
        assert_eq!(github("A", "x=y"), "A=x=y\n");
        assert_eq!(github("A", "l1\nl2"), "A<<CITUS_EOF\nl1\nl2\nCITUS_EOF\n");
        assert_eq!(github("A", "CITUS_EOF\nCITUS_EOF_"), "A<<CITUS_EOF__\nCITUS_EOF\nCITUS_EOF_\nCITUS_EOF__\n");
    }

    #[test]
    fn comments_stay_on_one_line() {
        assert_eq!(comment("a\nb\rc"), "# a b c\n");
    }
}
