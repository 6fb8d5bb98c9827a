//! An Apache htpasswd file of bcrypt hashes (`htpasswd -B -c FILE USER`), the credentials of
//! `registry.htpasswd`, as the distribution registry takes them. Parsing is pure and bounded;
//! [`Htpasswd::verify`] costs a bcrypt (tens of milliseconds of CPU: callers run it off the
//! async workers). Only bcrypt entries (`$2y$`, `$2b$`, `$2a$`) are taken: the file's other
//! schemes (MD5 `$apr1$`, SHA-1 `{SHA}`, crypt) are too weak for a network-facing write.

use std::collections::HashMap;

/// Largest file read.
pub const MAX_FILE: usize = 1 << 20;
/// Most users.
pub const MAX_USERS: usize = 10_000;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HtpasswdError {
    #[error("the htpasswd file is over {MAX_FILE} bytes")]
    TooBig,
    #[error("the htpasswd file lists over {MAX_USERS} users")]
    TooMany,
    #[error("htpasswd line {line}: not USER:HASH")]
    Malformed { line: usize },
    #[error("htpasswd line {line} ({user}): not a bcrypt hash (make it with `htpasswd -B`)")]
    NotBcrypt { line: usize, user: String },
    #[error("htpasswd line {line}: {user} is listed twice")]
    Duplicate { line: usize, user: String },
}

/// Users and their bcrypt hashes.
#[derive(Clone, Default)]
pub struct Htpasswd {
    users: HashMap<String, String>,
}

impl std::fmt::Debug for Htpasswd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Htpasswd")
            .field("users", &self.users.len())
            .finish()
    }
}

impl Htpasswd {
    /// Parses the file's text; blank lines and `#` comments are skipped.
    pub fn parse(text: &str) -> Result<Htpasswd, HtpasswdError> {
        if text.len() > MAX_FILE {
            return Err(HtpasswdError::TooBig);
        }
        let mut users = HashMap::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let l = raw.trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            let (user, hash) = l.split_once(':').ok_or(HtpasswdError::Malformed { line })?;
            if user.is_empty() || hash.is_empty() {
                return Err(HtpasswdError::Malformed { line });
            }
            let bcrypt = ["$2y$", "$2b$", "$2a$"].iter().any(|p| hash.starts_with(p));
            if !bcrypt || hash.len() != 60 {
                return Err(HtpasswdError::NotBcrypt {
                    line,
                    user: user.into(),
                });
            }
            if users.len() == MAX_USERS {
                return Err(HtpasswdError::TooMany);
            }
            if users.insert(user.to_string(), hash.to_string()).is_some() {
                return Err(HtpasswdError::Duplicate {
                    line,
                    user: user.into(),
                });
            }
        }
        Ok(Htpasswd { users })
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// The hash of `user`, if listed (what a cache of good answers is keyed by).
    pub fn hash_of(&self, user: &str) -> Option<&str> {
        self.users.get(user).map(String::as_str)
    }

    /// Whether `password` is `user`'s. CPU-heavy (one bcrypt) when the user is listed.
    pub fn verify(&self, user: &str, password: &str) -> bool {
        self.hash_of(user)
            .is_some_and(|h| bcrypt::verify(password, h).unwrap_or(false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Made by Apache's `htpasswd -nbB ci s3cret-push` (cost 5).
    const CI: &str = "ci:$2y$05$L/j6bRPAA6ddeIyphRIFIOPBKcFoQGUG6SpVXMk7KQygheaIw5Oiu";

    #[test]
    fn apaches_bcrypt_entries_verify() {
        let h = Htpasswd::parse(&format!("# pushers\n\n{CI}\n")).expect("parses");
        assert!(h.verify("ci", "s3cret-push"));
        assert!(!h.verify("ci", "s3cret-pusH"));
        assert!(!h.verify("other", "s3cret-push"));
    }

    #[test]
    fn weak_or_broken_files_are_refused_with_the_line() {
        let apr1 = "u:$apr1$abcdefgh$0123456789012345678901";
        for (text, want) in [
            ("nocolon", HtpasswdError::Malformed { line: 1 }),
            (":hash", HtpasswdError::Malformed { line: 1 }),
            (
                &format!("\n{apr1}") as &str,
                HtpasswdError::NotBcrypt {
                    line: 2,
                    user: "u".into(),
                },
            ),
            (
                "u:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=",
                HtpasswdError::NotBcrypt {
                    line: 1,
                    user: "u".into(),
                },
            ),
            (
                &format!("{CI}\n{CI}"),
                HtpasswdError::Duplicate {
                    line: 2,
                    user: "ci".into(),
                },
            ),
        ] {
            assert_eq!(Htpasswd::parse(text).map(|_| ()), Err(want), "{text}");
        }
        let big = "#".repeat(MAX_FILE + 1);
        assert_eq!(
            Htpasswd::parse(&big).map(|_| ()),
            Err(HtpasswdError::TooBig)
        );
    }
}
