//! Splitting a coprocess command line (`=cmd args`, `cmd://cmd args`) the way vdens and
//! libvdeplug_cmd do it: libexecs' s2argv (Debian libexecs0 1.3), no shell involved.
//!
//! Its rules, checked against the installed library: blanks (space, tab, newline) separate
//! arguments; `'...'` is literal; inside `"..."` a backslash is kept and protects the next byte;
//! outside quotes a backslash protects the next byte; a `;` ends the command (only the first
//! command runs); an argument starting with `$` is a variable, which libexecs as shipped
//! replaces with the empty string; a `$` inside a word is dropped.

#[derive(Clone, Copy, PartialEq, Eq)]
enum St {
    Space,
    Char,
    Single,
    Double,
    Escape,
    Var,
    DoubleEscape,
}

/// The argv of the first command in `s`.
pub fn split(s: &[u8]) -> Vec<Vec<u8>> {
    let mut argv = Vec::new();
    let mut cur: Vec<u8> = Vec::new();
    let mut st = St::Space;
    for &c in s.iter().chain(std::iter::once(&0u8)) {
        let end = c == 0;
        let blank = matches!(c, b' ' | b'\t' | b'\n');
        st = match st {
            St::Space => {
                if end || c == b';' {
                    return argv;
                }
                cur.clear();
                match c {
                    _ if blank => St::Space,
                    b'\'' => St::Single,
                    b'"' => St::Double,
                    b'\\' => St::Escape,
                    b'$' => St::Var,
                    _ => {
                        cur.push(c);
                        St::Char
                    }
                }
            }
            St::Char => {
                if end || blank || c == b';' {
                    argv.push(std::mem::take(&mut cur));
                    if end || c == b';' {
                        return argv;
                    }
                    St::Space
                } else {
                    match c {
                        b'\'' => St::Single,
                        b'"' => St::Double,
                        b'\\' => St::Escape,
                        b'$' => St::Char,
                        _ => {
                            cur.push(c);
                            St::Char
                        }
                    }
                }
            }
            St::Single | St::Double | St::Escape | St::DoubleEscape if end => {
                argv.push(std::mem::take(&mut cur));
                return argv;
            }
            St::Single => {
                if c == b'\'' {
                    St::Char
                } else {
                    cur.push(c);
                    St::Single
                }
            }
            St::Double => match c {
                b'"' => St::Char,
                b'\\' => {
                    cur.push(c);
                    St::DoubleEscape
                }
                _ => {
                    cur.push(c);
                    St::Double
                }
            },
            St::Escape => {
                cur.push(c);
                St::Char
            }
            St::DoubleEscape => {
                cur.push(c);
                St::Double
            }
            St::Var => {
                if end || blank || c == b';' {
                    // The variable's value: libexecs as shipped has no variable lookup.
                    cur.clear();
                    argv.push(Vec::new());
                    if end || c == b';' {
                        return argv;
                    }
                    St::Space
                } else {
                    St::Var
                }
            }
        };
    }
    argv
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cases checked against Debian's libexecs0 1.3 s2argv.
    #[test]
    fn matches_libexecs() {
        let cases: &[(&str, &[&str])] = &[
            ("a b", &["a", "b"]),
            ("  vde_plug   vde:///tmp/sw ", &["vde_plug", "vde:///tmp/sw"]),
            ("a$b", &["ab"]),
            ("$HOME x", &["", "x"]),
            ("\"a\\\"b\"", &["a\\\"b"]),
            ("'a\\b'", &["a\\b"]),
            ("x;y z", &["x"]),
            ("$NOPE", &[""]),
            ("a'' b", &["a", "b"]),
            ("'' b", &["", "b"]),
            ("\\ a", &[" a"]),
            ("\"$HOME\"", &["$HOME"]),
            ("", &[]),
            (";", &[]),
            ("'unclosed x", &["unclosed x"]),
            ("a\tb\nc", &["a", "b", "c"]),
            ("trailing\\", &["trailing"]),
        ];
        for (input, want) in cases {
            let got = split(input.as_bytes());
            let want: Vec<Vec<u8>> = want.iter().map(|s| s.as_bytes().to_vec()).collect();
            assert_eq!(got, want, "{input:?}");
        }
    }
}
