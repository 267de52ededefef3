//! TOML text to [`RawConfig`], in pieces when the file is large.
//!
//! The TOML parser holds a token list, an event list and a spanned tree of the whole document at
//! once: about 30 bytes of memory per byte of text, 35 MB at the peak for a file of 10,000
//! stores. A large file is parsed instead as its prelude (everything before the first
//! `[[store]]`) and then runs of `[[store]]` tables of about [`PIECE_BYTES`] each, so the peak is
//! that of one piece plus the stores read so far.
//!
//! A piece is the text between two `[[store]]` header lines, parsed on its own with the text
//! before it blanked to spaces, so every span (and every line number in a message) is that of the
//! whole file. Reading the file in pieces gives the same tables as reading it whole when:
//! every piece parses (a cut inside a string, an array or an inline table leaves the piece
//! before it unterminated), the prelude has no `store` key, and every other top-level key is in
//! one piece only (so no rule of TOML spans two pieces; `[[store]]` only appends). Any other file, and any file with an error, is parsed whole: the result,
//! and every message, is exactly the one-piece one.

use super::*;
use toml::de::{DeTable, Deserializer};

/// Files up to this size are parsed whole.
pub(super) const WHOLE_BYTES: usize = 256 * 1024;
/// The size a piece of `[[store]]` tables grows to before the next one starts.
pub(super) const PIECE_BYTES: usize = 128 * 1024;

/// Parses `text`; an error is the whole-file parser's.
pub(super) fn raw_config(text: &str) -> Result<RawConfig, toml::de::Error> {
    if text.len() > WHOLE_BYTES
        && let Some(raw) = in_pieces(text)
    {
        return Ok(raw);
    }
    toml::from_str(text)
}

/// The byte offsets of the lines that are a `[[store]]` header (spaces and a comment allowed).
pub(super) fn store_headers(text: &str) -> impl Iterator<Item = usize> + '_ {
    let mut at = 0;
    text.split_inclusive('\n').filter_map(move |line| {
        let start = at;
        at += line.len();
        let t = line.trim_start_matches([' ', '\t']).strip_prefix("[[")?;
        let t = t.trim_start_matches([' ', '\t']).strip_prefix("store")?;
        let t = t.trim_start_matches([' ', '\t']).strip_prefix("]]")?;
        let rest = t.trim_start_matches([' ', '\t', '\r', '\n']);
        (rest.is_empty() || rest.starts_with('#')).then_some(start)
    })
}

/// `text` in pieces, or `None` when it must be parsed whole (see the module's rules).
pub(super) fn in_pieces(text: &str) -> Option<RawConfig> {
    let mut cuts = vec![0];
    for at in store_headers(text) {
        if cuts.len() == 1 || at - cuts[cuts.len() - 1] >= PIECE_BYTES {
            cuts.push(at);
        }
    }
    if cuts.len() < 3 {
        return None;
    }
    cuts.push(text.len());
    let mut raw = RawConfig::default();
    // The top-level keys read so far, but `store`: each may be in one piece only.
    let mut seen = HashSet::new();
    // One buffer for every piece, each longer than the one before.
    let mut piece = String::with_capacity(text.len());
    for (i, pair) in cuts.windows(2).enumerate() {
        let (from, to) = (pair[0], pair[1]);
        piece.truncate(0);
        piece.extend(std::iter::repeat_n(' ', from));
        piece.push_str(&text[from..to]);
        let table = DeTable::parse(&piece).ok()?;
        let mut keys = Vec::new();
        for key in table.get_ref().keys() {
            let key: &str = key.get_ref();
            if key == "store" {
                // The prelude is everything before the first `[[store]]`.
                if i == 0 {
                    return None;
                }
            } else if !seen.insert(key.to_string()) {
                return None;
            }
            keys.push(key.to_string());
        }
        let part = RawConfig::deserialize(Deserializer::from(table)).ok()?;
        merge(&mut raw, part, &keys);
    }
    Some(raw)
}

/// Adds the tables of one piece, whose top-level keys are `keys`, to `into`.
fn merge(into: &mut RawConfig, part: RawConfig, keys: &[String]) {
    // Every field by name: a new one does not compile until it is merged here.
    let RawConfig {
        daemon,
        defaults,
        marketplace,
        stores,
        channels,
        maintenance,
        mail,
        mailboxes,
        replicas,
    } = part;
    let has = |k: &str| keys.iter().any(|x| x == k);
    if has("daemon") {
        into.daemon = daemon;
    }
    if has("defaults") {
        into.defaults = defaults;
    }
    if has("marketplace") {
        into.marketplace = marketplace;
    }
    if has("mail") {
        into.mail = mail;
    }
    if has("replicas") {
        into.replicas = replicas;
    }
    // Arrays of tables: `store` goes on from piece to piece, the others are in one piece only.
    into.stores.extend(stores);
    into.channels.extend(channels);
    into.maintenance.extend(maintenance);
    into.mailboxes.extend(mailboxes);
}
