//! The copy of a sample's user stack that unwinding reads (the kernel copies it from `sp`
//! upward), and whether a read that failed means the copy was too short.

use crate::TRUNCATION_WINDOW;

/// The copied stack: `bytes` are the memory at `sp..sp + bytes.len()`.
pub(crate) struct StackCopy<'a> {
    pub(crate) sp: u64,
    pub(crate) end: u64,
    bytes: &'a [u8],
}

impl<'a> StackCopy<'a> {
    pub(crate) fn new(sp: u64, bytes: &'a [u8]) -> Self {
        let len = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
        let end = sp.saturating_add(len);
        let usable = usize::try_from(end - sp).unwrap_or(bytes.len());
        Self {
            sp,
            end,
            bytes: bytes.get(..usable).unwrap_or(bytes),
        }
    }

    pub(crate) fn read(&self, addr: u64) -> Option<u64> {
        let off = usize::try_from(addr.checked_sub(self.sp)?).ok()?;
        let word = self.bytes.get(off..off.checked_add(8)?)?;
        Some(u64::from_le_bytes(word.try_into().ok()?))
    }

    /// Whether a failed read at `addr` failed because the copy ends too early. An empty copy
    /// never does: the kernel copies nothing only when it cannot read the stack at all (e.g.
    /// a sample taken in the middle of an execve), which no larger copy would fix.
    pub(crate) fn needs_more(&self, addr: u64) -> bool {
        !self.bytes.is_empty()
            && addr >= self.sp
            && addr.saturating_add(8) > self.end
            && addr < self.end.saturating_add(TRUNCATION_WINDOW)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_words_inside_the_copy_and_tells_a_short_copy_from_a_bad_address() {
        let bytes: Vec<u8> = (0u8..24).collect();
        let stack = StackCopy::new(0x1000, &bytes);
        assert_eq!(stack.end, 0x1018);
        assert_eq!(stack.read(0x1000), Some(0x0706_0504_0302_0100));
        assert_eq!(stack.read(0x1010), Some(0x1716_1514_1312_1110));
        // Partly or wholly past the end, or below sp: not in the copy.
        assert_eq!(stack.read(0x1011), None);
        assert_eq!(stack.read(0x1018), None);
        assert_eq!(stack.read(0xff8), None);
        assert_eq!(stack.read(u64::MAX), None);
        // Past the end but near it: the copy was too short.
        assert!(stack.needs_more(0x1011));
        assert!(stack.needs_more(0x1018 + TRUNCATION_WINDOW - 1));
        // Inside the copy, below sp, or far away: a bad address.
        assert!(!stack.needs_more(0x1008));
        assert!(!stack.needs_more(0xff8));
        assert!(!stack.needs_more(0x1018 + TRUNCATION_WINDOW));
        // An empty copy never asks for more.
        let empty = StackCopy::new(0x1000, &[]);
        assert_eq!(empty.read(0x1000), None);
        assert!(!empty.needs_more(0x1000));
        // A copy that would reach past 2^64 stops there.
        let top = StackCopy::new(u64::MAX - 7, &bytes);
        assert_eq!(top.end, u64::MAX);
        assert_eq!(top.read(u64::MAX - 7), None);
    }
}
