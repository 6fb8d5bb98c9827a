//! containerd's filter syntax, as `List` receives it (containerd `filters` package):
//! `<fieldpath>[<op><value>]` selectors joined by `,` (all must match); several filter strings
//! match if any does. Field paths are dot-separated, parts quoted with `"…"` when they hold other
//! characters (`labels."containerd.io/snapshot.ref"`); operators `==`, `!=`, and none (the field
//! is present). Values are quoted or run to the next `,`. containerd's own metadata layer sends
//! `labels."containerd.io/snapshot.ref"==<target>,parent=="<parent>"` to find a remote snapshot.
//! `~=` (regular expressions) is refused with a clear error.

use super::Error;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    Present,
    Eq(String),
    Ne(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Selector {
    path: Vec<String>,
    op: Op,
}

/// A parsed filter: any of `alternatives`, each all of its selectors. No alternatives: all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    alternatives: Vec<Vec<Selector>>,
}

fn bad(f: &str, why: &str) -> Error {
    Error::InvalidArgument(format!("filter {f:?}: {why}"))
}

struct Scan<'a> {
    src: &'a str,
    rest: &'a str,
}

impl<'a> Scan<'a> {
    fn peek(&self) -> Option<char> {
        self.rest.chars().next()
    }

    fn bump(&mut self, n: usize) {
        self.rest = &self.rest[n..];
    }

    /// A `"…"` string with Go escapes `\"` and `\\` (the opening quote not yet taken).
    fn quoted(&mut self) -> Result<String, Error> {
        self.bump(1);
        let mut out = String::new();
        let mut chars = self.rest.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    self.bump(i + 1);
                    return Ok(out);
                }
                '\\' => match chars.next() {
                    Some((_, e @ ('"' | '\\'))) => out.push(e),
                    Some((_, 'n')) => out.push('\n'),
                    Some((_, 't')) => out.push('\t'),
                    _ => return Err(bad(self.src, "unsupported escape in a quoted string")),
                },
                c => out.push(c),
            }
        }
        Err(bad(self.src, "unterminated quoted string"))
    }

    fn field(&mut self) -> Result<String, Error> {
        match self.peek() {
            Some('"') => self.quoted(),
            Some('/' | '|') => Err(bad(self.src, "regular-expression quoting is not supported")),
            _ => {
                let n = self
                    .rest
                    .find(|c: char| !(c == '_' || c.is_ascii_alphanumeric()))
                    .unwrap_or(self.rest.len());
                if n == 0 {
                    return Err(bad(self.src, "expected a field name"));
                }
                let f = self.rest[..n].to_string();
                self.bump(n);
                Ok(f)
            }
        }
    }

    fn value(&mut self) -> Result<String, Error> {
        if self.peek() == Some('"') {
            return self.quoted();
        }
        let n = self.rest.find(',').unwrap_or(self.rest.len());
        let v = self.rest[..n].trim().to_string();
        if v.is_empty() {
            return Err(bad(self.src, "expected a value after the operator"));
        }
        self.bump(n);
        Ok(v)
    }

    fn selector(&mut self) -> Result<Selector, Error> {
        let mut path = vec![self.field()?];
        while self.peek() == Some('.') {
            self.bump(1);
            path.push(self.field()?);
        }
        let op = if self.rest.starts_with("==") {
            self.bump(2);
            Op::Eq(self.value()?)
        } else if self.rest.starts_with("!=") {
            self.bump(2);
            Op::Ne(self.value()?)
        } else if self.rest.starts_with("~=") {
            return Err(bad(
                self.src,
                "the ~= (regular expression) operator is not supported",
            ));
        } else {
            Op::Present
        };
        Ok(Selector { path, op })
    }
}

impl Filter {
    /// Parses the filter strings of a `List` request.
    pub fn parse(filters: &[String]) -> Result<Filter, Error> {
        let mut alternatives = Vec::new();
        for f in filters.iter().filter(|f| !f.trim().is_empty()) {
            let mut s = Scan {
                src: f,
                rest: f.trim(),
            };
            let mut all = vec![s.selector()?];
            loop {
                match s.peek() {
                    None => break,
                    Some(',') => {
                        s.bump(1);
                        s.rest = s.rest.trim_start();
                        all.push(s.selector()?);
                    }
                    Some(c) => return Err(bad(f, &format!("unexpected {c:?}"))),
                }
            }
            alternatives.push(all);
        }
        Ok(Filter { alternatives })
    }

    /// Whether an item matches; `field` gives the value at a path (None: absent).
    pub fn matches<'a>(&self, field: impl Fn(&[String]) -> Option<&'a str>) -> bool {
        self.alternatives.is_empty()
            || self.alternatives.iter().any(|all| {
                all.iter().all(|s| {
                    let v = field(&s.path);
                    match &s.op {
                        Op::Present => v.is_some(),
                        Op::Eq(want) => v == Some(want.as_str()),
                        Op::Ne(want) => v != Some(want.as_str()),
                    }
                })
            })
    }
}
