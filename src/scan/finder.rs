//! [`Scanner`]: the tokens of one format in bytes, found without a regex —
//! SIMD substring search for `<prefix>_`, then the shape and the checksum
//! of what follows.

use memchr::memmem;

use crate::token::{BODY_LEN, TokenFormat};

/// Bytes that continue a word: a token inside a longer word is not one.
fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Finds the tokens of one [`TokenFormat`] in bytes.
///
/// A token counts when it stands alone — neither preceded nor followed by
/// a letter, digit or `_` — has the exact shape `<prefix>_live_` or
/// `<prefix>_test_` and 54 base62 characters, and its CRC-32 checksum
/// holds. Look-alikes (another prefix, a truncated or lengthened token, a
/// broken checksum, a token glued inside a longer word) are not reported.
///
/// # Example
///
/// ```
/// use keygate::scan::Scanner;
/// use keygate::{Environment, TokenFormat};
///
/// let format = TokenFormat::default();
/// let token = format.generate(Environment::Live);
/// let text = format!("API_KEY={}\nOTHER=kg_live_notatoken\n", token.expose());
///
/// let scanner = Scanner::new(format);
/// let found: Vec<usize> = scanner.offsets(text.as_bytes()).collect();
/// assert_eq!(found, [8]);
/// ```
#[derive(Clone, Debug)]
pub struct Scanner {
    format: TokenFormat,
    /// `<prefix>_`.
    needle: memmem::Finder<'static>,
    /// `<prefix>_live_` + 54: the length of every token of the format.
    token_len: usize,
}

impl Scanner {
    /// A scanner for the tokens of `format`.
    ///
    /// ```
    /// use keygate::scan::Scanner;
    /// use keygate::{Environment, TokenFormat};
    ///
    /// let ours = TokenFormat::new("acme")?;
    /// let token = ours.generate(Environment::Live);
    /// let theirs = TokenFormat::default().generate(Environment::Live);
    /// let text = format!("{} {}", theirs.expose(), token.expose());
    /// // Only the tokens of the scanner's own prefix.
    /// let found: Vec<usize> = Scanner::new(ours).offsets(text.as_bytes()).collect();
    /// assert_eq!(found, [theirs.expose().len() + 1]);
    /// # Ok::<(), keygate::InvalidPrefix>(())
    /// ```
    pub fn new(format: TokenFormat) -> Scanner {
        let needle = format!("{}_", format.prefix());
        let token_len = needle.len() + "live_".len() + BODY_LEN;
        Scanner {
            needle: memmem::Finder::new(needle.as_bytes()).into_owned(),
            format,
            token_len,
        }
    }

    /// The token format searched for.
    ///
    /// ```
    /// use keygate::scan::Scanner;
    /// use keygate::TokenFormat;
    ///
    /// let scanner = Scanner::new(TokenFormat::new("acme")?);
    /// assert_eq!(scanner.format().prefix(), "acme");
    /// # Ok::<(), keygate::InvalidPrefix>(())
    /// ```
    pub fn format(&self) -> &TokenFormat {
        &self.format
    }

    /// The length of a token of this format, in bytes.
    pub(crate) fn token_len(&self) -> usize {
        self.token_len
    }

    /// The byte offsets of the tokens in `data`, in order.
    pub fn offsets<'a>(&'a self, data: &'a [u8]) -> impl Iterator<Item = usize> + 'a {
        let mut found = Vec::new();
        self.scan_block(data, 0, true, |offset| found.push(offset));
        found.into_iter()
    }

    /// The tokens in `data` whose offsets are at or after `from` and, unless
    /// `at_end` (the data ends where the input ends), whose last byte and
    /// the byte after it are inside `data`; each offset is given to
    /// `found`. Returns the offset of the first occurrence not judged: the
    /// next block must hold the data from there (and the byte before it,
    /// which judges the boundary) on.
    ///
    /// An offset 0 is the start of the input: nothing precedes it.
    pub(crate) fn scan_block(
        &self,
        data: &[u8],
        from: usize,
        at_end: bool,
        mut found: impl FnMut(usize),
    ) -> usize {
        let limit = if at_end {
            data.len()
        } else {
            data.len().saturating_sub(self.token_len)
        };
        let Some(tail) = data.get(from..) else {
            return limit;
        };
        for at in self.needle.find_iter(tail) {
            let at = from + at;
            if at >= limit {
                break;
            }
            if self.is_token_at(data, at) {
                found(at);
            }
        }
        limit
    }

    /// Whether a token of this format starts at `at` (where `<prefix>_`
    /// was found) and stands alone in `data`.
    fn is_token_at(&self, data: &[u8], at: usize) -> bool {
        if at > 0 && data.get(at - 1).copied().is_some_and(is_word) {
            return false;
        }
        let Some(candidate) = data.get(at..at + self.token_len) else {
            return false;
        };
        if data.get(at + self.token_len).copied().is_some_and(is_word) {
            return false;
        }
        let env = &candidate[self.needle.needle().len()..][..5];
        if env != b"live_" && env != b"test_" {
            return false;
        }
        // Only ASCII is valid here; the parser checks every byte and the checksum.
        match std::str::from_utf8(candidate) {
            Ok(text) => self.format.parse(text).is_ok(),
            Err(_) => false,
        }
    }
}

/// Line and column of byte offsets in a stream, fed in order: lines
/// from 1, columns from 1 in Unicode characters (UTF-8 lead bytes; any
/// other byte counts as one).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Locator {
    /// Bytes fed so far.
    pos: u64,
    /// The line `pos` is on.
    line: u64,
    /// Characters between the line's start and `pos`.
    column: u64,
}

impl Locator {
    pub(crate) fn new() -> Locator {
        Locator {
            pos: 0,
            line: 1,
            column: 0,
        }
    }

    /// Bytes fed so far.
    pub(crate) fn pos(&self) -> u64 {
        self.pos
    }

    /// Feeds the next bytes of the stream.
    pub(crate) fn feed(&mut self, bytes: &[u8]) {
        let chars = |b: &[u8]| b.iter().filter(|&&b| b & 0xC0 != 0x80).count() as u64;
        match memchr::memrchr(b'\n', bytes) {
            Some(last) => {
                self.line += memchr::memchr_iter(b'\n', bytes).count() as u64;
                self.column = chars(&bytes[last + 1..]);
            }
            None => self.column += chars(bytes),
        }
        self.pos += bytes.len() as u64;
    }

    /// `(line, column)` of the byte at [`pos`](Locator::pos).
    pub(crate) fn here(&self) -> (u64, u64) {
        (self.line, self.column + 1)
    }
}

/// `(line, column)` of each of the sorted `offsets` in `data`.
pub(crate) fn locate(data: &[u8], offsets: &[usize]) -> Vec<(u64, u64)> {
    let mut locator = Locator::new();
    let mut at = 0usize;
    offsets
        .iter()
        .map(|&offset| {
            locator.feed(&data[at..offset]);
            at = offset;
            locator.here()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::{Locator, Scanner, locate};
    use crate::token::{Environment, TokenFormat};

    fn token() -> String {
        TokenFormat::default()
            .generate(Environment::Live)
            .expose()
            .to_owned()
    }

    fn scanner() -> Scanner {
        Scanner::new(TokenFormat::default())
    }

    /// Every offset found when `data` is fed in blocks of `block` bytes,
    /// the way the file reader does.
    fn streamed(scanner: &Scanner, data: &[u8], block: usize) -> Vec<usize> {
        let mut found = Vec::new();
        let (mut start, mut from, mut end) = (0usize, 0usize, 0usize);
        loop {
            end = (end + block).min(data.len());
            let at_end = end == data.len();
            let resume = scanner.scan_block(&data[start..end], from, at_end, |o| {
                found.push(start + o);
            });
            if at_end {
                return found;
            }
            let keep = resume.saturating_sub(1);
            from = resume - keep;
            start += keep;
        }
    }

    #[test]
    fn a_real_token_is_found_where_it_stands() {
        let t = token();
        for (text, at) in [
            (t.clone(), 0),
            (format!("key = \"{t}\""), 7),
            (format!("Bearer {t}\n"), 7),
            (format!("x={t}&y=1"), 2),
            (format!("é {t}"), 3),
        ] {
            assert_eq!(
                scanner().offsets(text.as_bytes()).collect::<Vec<_>>(),
                [at],
                "{text:?}"
            );
        }
    }

    #[test]
    fn look_alikes_are_not_tokens() {
        let t = token();
        let mut broken = t.clone().into_bytes();
        let last = broken.len() - 1;
        broken[last] = if broken[last] == b'0' { b'1' } else { b'0' };
        let broken = String::from_utf8(broken).unwrap();
        let other_prefix = t.replacen("kg_", "kx_", 1);
        let other_env = t.replacen("_live_", "_prod_", 1);
        for text in [
            broken,
            other_prefix,
            other_env,
            t[..t.len() - 1].to_owned(),
            format!("{t}0"),
            format!("{t}_"),
            format!("x{t}"),
            format!("_{t}"),
            format!("my{t}suffix"),
            "kg_live_".to_owned(),
            "kg_".to_owned(),
            String::new(),
        ] {
            assert_eq!(scanner().offsets(text.as_bytes()).count(), 0, "{text:?}");
        }
    }

    #[test]
    fn a_custom_prefix_is_searched_alone() {
        let acme = TokenFormat::new("acme").unwrap();
        let t = acme.generate(Environment::Test);
        let kg = token();
        let text = format!("{kg} {}", t.expose());
        let found: Vec<_> = Scanner::new(acme).offsets(text.as_bytes()).collect();
        assert_eq!(found, [kg.len() + 1]);
    }

    #[test]
    fn tokens_across_block_boundaries_are_found_once() {
        let t = token();
        let text = format!("a {t} b\n{t}\n{t}");
        let whole: Vec<_> = scanner().offsets(text.as_bytes()).collect();
        assert_eq!(whole.len(), 3);
        for block in [63, 64, 65, 70, 100, 128, 1000] {
            assert_eq!(
                streamed(&scanner(), text.as_bytes(), block),
                whole,
                "block {block}"
            );
        }
    }

    #[test]
    fn lines_and_columns_count_characters() {
        let data = "ab\ncdé f\n\nxyz".as_bytes();
        let f = data.iter().position(|&b| b == b'f').unwrap();
        let x = data.iter().position(|&b| b == b'x').unwrap();
        assert_eq!(
            locate(data, &[0, 3, f, x]),
            [(1, 1), (2, 1), (2, 5), (4, 1)]
        );
        let mut locator = Locator::new();
        locator.feed(b"ab\nc");
        locator.feed(b"d");
        assert_eq!((locator.here(), locator.pos()), ((2, 3), 5));
    }

    proptest! {
        /// Bytes of any kind never make the scanner panic, and whatever
        /// it reports is a token of the format, at the offset reported.
        #[test]
        fn any_bytes_yield_only_real_tokens(data in proptest::collection::vec(any::<u8>(), 0..400)) {
            let scanner = scanner();
            for at in scanner.offsets(&data) {
                let text = std::str::from_utf8(&data[at..at + scanner.token_len()]).unwrap();
                prop_assert!(TokenFormat::default().parse(text).is_ok());
            }
        }

        /// Tokens planted in noise are all found, at their offsets, and
        /// streaming in blocks finds the same as one pass.
        #[test]
        fn planted_tokens_are_found_in_noise(
            noise in proptest::collection::vec(
                prop_oneof![Just(b' '), Just(b'\n'), Just(b'k'), Just(b'g'), Just(b'_'), Just(b'='), 0x80u8..=0xFF],
                0..200),
            cuts in proptest::collection::vec(0usize..200, 0..4),
            block in 63usize..300,
        ) {
            let mut data = Vec::new();
            let mut planted = Vec::new();
            let mut cuts = cuts;
            cuts.sort_unstable();
            let mut last = 0;
            for cut in cuts.into_iter().map(|c| c.min(noise.len())) {
                data.extend_from_slice(&noise[last..cut]);
                data.push(b' ');
                planted.push(data.len());
                data.extend_from_slice(token().as_bytes());
                data.push(b'\n');
                last = cut;
            }
            data.extend_from_slice(&noise[last..]);
            let scanner = scanner();
            let found: Vec<_> = scanner.offsets(&data).collect();
            prop_assert_eq!(&found, &planted);
            prop_assert_eq!(streamed(&scanner, &data, block), planted);
        }
    }
}
