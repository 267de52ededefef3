//! Asking the user for values: hidden input at a terminal, plain lines from a pipe.
//!
//! Secrets never come from argv. At a terminal, secret fields are read without echo; from a
//! pipe, each answer is one line (so scripts and tests can drive the same commands).

use secrecy::SecretString;
use std::io::{self, BufRead, IsTerminal, Read, Write};
use zeroize::Zeroizing;

/// Reads answers from stdin, prompting on stderr when stdin is a terminal.
pub struct Prompter {
    interactive: bool,
    stdin: io::StdinLock<'static>,
}

impl Default for Prompter {
    fn default() -> Self {
        Self::new()
    }
}

impl Prompter {
    pub fn new() -> Self {
        let stdin = io::stdin();
        Prompter {
            interactive: stdin.is_terminal(),
            stdin: stdin.lock(),
        }
    }

    pub fn interactive(&self) -> bool {
        self.interactive
    }

    fn read_line(&mut self) -> io::Result<Option<Zeroizing<String>>> {
        let mut line = Zeroizing::new(String::new());
        if self.stdin.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        let trimmed = Zeroizing::new(line.trim_end_matches(['\n', '\r']).to_string());
        Ok(Some(trimmed))
    }

    /// Asks for a visible value. `default` is used when the answer is empty.
    pub fn ask(&mut self, question: &str, default: Option<&str>) -> io::Result<String> {
        if self.interactive {
            match default {
                Some(d) => eprint!("{question} [{d}]: "),
                None => eprint!("{question}: "),
            }
            io::stderr().flush()?;
        }
        let answer = self.read_line()?.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("no answer for \"{question}\" on stdin"),
            )
        })?;
        let a = answer.trim().to_string();
        Ok(if a.is_empty() {
            default.unwrap_or("").to_string()
        } else {
            a
        })
    }

    /// Asks for a secret: hidden at a terminal, one line from a pipe.
    pub fn ask_secret(&mut self, question: &str) -> io::Result<SecretString> {
        if self.interactive {
            let v = rpassword::prompt_password(format!("{question}: "))?;
            return Ok(SecretString::from(v));
        }
        let answer = self.read_line()?.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("no answer for \"{question}\" on stdin"),
            )
        })?;
        Ok(SecretString::from(answer.trim().to_string()))
    }

    /// Reads the rest of stdin (capped), e.g. a whole secret TOML document.
    pub fn read_rest(&mut self, cap: u64) -> io::Result<Zeroizing<String>> {
        let mut buf = Zeroizing::new(Vec::new());
        (&mut self.stdin).take(cap + 1).read_to_end(&mut buf)?;
        if buf.len() as u64 > cap {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "input is larger than 1 MiB",
            ));
        }
        let s = std::str::from_utf8(&buf)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "input is not UTF-8 text"))?;
        Ok(Zeroizing::new(s.to_string()))
    }
}

/// Asks for a passphrase at the terminal, if there is one.
pub fn passphrase_from_terminal(what: &str) -> Option<SecretString> {
    if !io::stdin().is_terminal() {
        return None;
    }
    rpassword::prompt_password(format!("Passphrase for {what}: "))
        .ok()
        .map(SecretString::from)
}
