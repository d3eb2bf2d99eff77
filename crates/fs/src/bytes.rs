//! Bytes read from a file, taken apart with every length checked first: rprof's own cache
//! files are parsed with this, never trusted.

/// The unread rest of some bytes. Every read checks that the bytes are there, and fails
/// (`None`) instead of reading past them.
#[derive(Debug, Clone, Copy)]
pub struct Cursor<'a>(pub &'a [u8]);

impl<'a> Cursor<'a> {
    /// The next `n` bytes.
    pub fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.0.len() {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    /// A little-endian u32.
    pub fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    /// A little-endian u64.
    pub fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    /// A u32 count of items of at least `min_size` bytes each: refused when the bytes left
    /// cannot hold that many, so that nothing is allocated for a count that lies.
    pub fn count(&mut self, min_size: usize) -> Option<usize> {
        let n = usize::try_from(self.u32()?).ok()?;
        (n <= self.0.len() / min_size.max(1)).then_some(n)
    }

    /// A u32 length and that many bytes of UTF-8.
    pub fn text(&mut self) -> Option<&'a str> {
        let n = usize::try_from(self.u32()?).ok()?;
        std::str::from_utf8(self.take(n)?).ok()
    }

    /// Whether every byte was read.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Appends `n` as a little-endian u32 (saturated).
pub fn put_u32(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes());
}

/// Appends `text` as a u32 length and its bytes.
pub fn put_text(out: &mut Vec<u8>, text: &str) {
    put_u32(out, text.len());
    out.extend_from_slice(text.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_stop_at_the_end() {
        let mut bytes = Vec::new();
        put_text(&mut bytes, "name");
        put_u32(&mut bytes, 3);
        let mut c = Cursor(&bytes);
        assert_eq!(c.text(), Some("name"));
        assert_eq!(c.count(1), None, "3 items of a byte, none left");
        let mut c = Cursor(&bytes[..5]);
        assert_eq!(c.text(), None, "cut inside the text");
        assert_eq!(Cursor(&[1, 2, 3]).u32(), None);
        assert_eq!(Cursor(&[0xff; 4]).text(), None);
        assert!(Cursor(&[]).is_empty());
    }
}
