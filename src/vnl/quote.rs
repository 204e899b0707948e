//! The quoting tokenizer libvdeplug applies to VNL parameters (parseparms.c of vdeplug4 v4.0.1):
//! `'...'` and `"..."` protect delimiters (no escapes inside them), an unquoted `\` protects the
//! next byte, and `%xx` (two hex digits, either case) outside quotes becomes that byte. A `%`
//! not followed by two hex digits stays as it is. Unclosed quotes and a trailing `\` are
//! accepted silently, as libvdeplug does. A NUL byte ends the input, as in a C string.

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    Char,
    Quote,
    DoubleQ,
    Esc,
    /// Just after an unquoted `%`.
    Perc,
    /// After `%` and one more byte.
    Per2,
    Delim,
    End,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Class {
    Char,
    Quote,
    DoubleQ,
    Esc,
    Perc,
    Delim,
    End,
}

fn class(c: u8, delim: u8) -> Class {
    match c {
        0 => Class::End,
        b'\'' => Class::Quote,
        b'"' => Class::DoubleQ,
        b'\\' => Class::Esc,
        b'%' => Class::Perc,
        c if c == delim => Class::Delim,
        _ => Class::Char,
    }
}

/// The state after reading a byte of `class` in `state`.
fn next(state: State, class: Class) -> State {
    use Class as C;
    use State as S;
    if class == C::End {
        return S::End;
    }
    match state {
        // Char, Perc, Per2 and Delim share one row: a new element starts in the same way.
        S::Char | S::Perc | S::Per2 | S::Delim => match class {
            C::Char if state == S::Perc => S::Per2,
            C::Char => S::Char,
            C::Quote => S::Quote,
            C::DoubleQ => S::DoubleQ,
            C::Esc => S::Esc,
            C::Perc => S::Perc,
            C::Delim => S::Delim,
            C::End => S::End,
        },
        S::Quote => {
            if class == C::Quote {
                S::Char
            } else {
                S::Quote
            }
        }
        S::DoubleQ => {
            if class == C::DoubleQ {
                S::Char
            } else {
                S::DoubleQ
            }
        }
        S::Esc => S::Char,
        S::End => S::End,
    }
}

#[derive(PartialEq, Eq)]
enum Action {
    Skip,
    Copy,
    /// Copy, then decode a `%xx` ending here.
    CopyPercent,
}

fn action(state: State, class: Class) -> Action {
    use Class as C;
    use State as S;
    match (state, class) {
        (_, C::End) => Action::Skip,
        (S::Char | S::Perc, C::Char | C::Perc) => Action::Copy,
        (S::Per2, C::Char) => Action::CopyPercent,
        (S::Per2, C::Perc) => Action::Copy,
        (S::Char | S::Perc | S::Per2, _) => Action::Skip,
        (S::Quote, C::Quote) | (S::DoubleQ, C::DoubleQ) => Action::Skip,
        (S::Quote | S::DoubleQ | S::Esc, _) => Action::Copy,
        (S::Delim | S::End, _) => Action::Skip,
    }
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

/// Reads one element of `s` up to the first unquoted `delim`, removing quotes and escapes and
/// decoding `%xx` (libvdeplug's strtokq_r). Returns the element, cut at a decoded NUL as C
/// would see it, and what follows the delimiter, or `None` when the input ended.
pub fn token(s: &[u8], delim: u8) -> (Vec<u8>, Option<&[u8]>) {
    let mut out = Vec::with_capacity(s.len());
    let mut state = State::Char;
    let mut i = 0;
    loop {
        let c = s.get(i).copied().unwrap_or(0);
        let cl = class(c, delim);
        match action(state, cl) {
            Action::Skip => {}
            Action::Copy => out.push(c),
            Action::CopyPercent => {
                out.push(c);
                let n = out.len();
                // out[n-3] is the '%': Per2 is only reached by copying '%' then one byte.
                if let (Some(h), Some(l)) = (hex(out[n - 2]), hex(out[n - 1])) {
                    out.truncate(n - 3);
                    out.push(h * 16 + l);
                }
            }
        }
        i += 1;
        state = next(state, cl);
        match state {
            State::Delim => return (c_string(out), Some(&s[i..])),
            State::End => return (c_string(out), None),
            _ => {}
        }
    }
}

/// Cuts `s` at its last unquoted `delim` (libvdeplug's strtokq_rev_r); without one, `s` up to
/// its end (or a NUL byte). Quotes and escapes are kept: the result is tokenized again.
pub fn before_last(s: &[u8], delim: u8) -> &[u8] {
    let mut state = State::Char;
    let mut cut = None;
    let mut end = s.len();
    for (i, &c) in s.iter().enumerate() {
        let cl = class(c, delim);
        state = next(state, cl);
        if state == State::End {
            end = i;
            break;
        }
        if state == State::Delim {
            cut = Some(i);
        }
    }
    &s[..cut.unwrap_or(end)]
}

/// C sees a string up to its first NUL; a `%00` ends the element there.
fn c_string(mut v: Vec<u8>) -> Vec<u8> {
    if let Some(p) = v.iter().position(|&b| b == 0) {
        v.truncate(p);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tok(s: &str, d: u8) -> (String, Option<String>) {
        let (t, rest) = token(s.as_bytes(), d);
        (
            String::from_utf8(t).unwrap(),
            rest.map(|r| String::from_utf8(r.to_vec()).unwrap()),
        )
    }

    #[test]
    fn tokenizer_table() {
        let cases: &[(&str, &str, Option<&str>)] = &[
            ("", "", None),
            ("abc", "abc", None),
            ("a/b", "a", Some("b")),
            ("/b", "", Some("b")),
            ("a/", "a", Some("")),
            ("'a/b'/c", "a/b", Some("c")),
            ("\"a/b\"/c", "a/b", Some("c")),
            ("a\\/b/c", "a/b", Some("c")),
            ("'a\\b'", "a\\b", None),
            ("\"it's\"", "it's", None),
            ("'say \"x\"'", "say \"x\"", None),
            ("%41%62c", "Abc", None),
            ("%2f/x", "/", Some("x")),
            ("%zz", "%zz", None),
            ("%4", "%4", None),
            ("%", "%", None),
            ("%%41", "%A", None),
            ("%4%41", "%4A", None),
            ("'%41'", "%41", None),
            ("\\%41", "%41", None),
            ("'unclosed/x", "unclosed/x", None),
            ("\"unclosed", "unclosed", None),
            ("trailing\\", "trailing", None),
            ("a%00b/c", "a", Some("c")),
            ("x%4'1'", "x%41", None),
        ];
        for (input, want, rest) in cases {
            let got = tok(input, b'/');
            assert_eq!(
                got,
                (want.to_string(), rest.map(|r| r.to_string())),
                "input {input:?}"
            );
        }
    }

    #[test]
    fn before_last_table() {
        let cases: &[(&str, &str)] = &[
            ("3]", "3"),
            ("3", "3"),
            ("a]b]c", "a]b"),
            ("a']'b", "a']'b"),
            ("a\\]b]", "a\\]b"),
            ("mode=\"7]\"]x", "mode=\"7]\""),
            ("", ""),
        ];
        for (input, want) in cases {
            assert_eq!(before_last(input.as_bytes(), b']'), want.as_bytes(), "{input:?}");
        }
    }
}
