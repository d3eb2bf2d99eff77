//! The names file of one module: what it was named from, and its pieces.
//!
//! Layout (little endian): the magic; a u32 length and that many bytes of body; the CRC-32 of
//! the body. The body: the build id (hex), the namer's tag, a u32 count of sources and that many
//! (path, identity) pairs, a u32 count of strings and the strings, a u32 count of pieces and
//! that many (start u64, end u64, first frame u32, frame count u32), a u32 count of frames and
//! that many (function u32, file u32, line u32, inlined u8). Texts are a u32 length and UTF-8
//! bytes. Pieces are sorted and do not overlap, each holds at least one frame of those present,
//! and string indices are in range or `u32::MAX` (unknown). Anything else, a bad checksum or a
//! byte left over, makes the whole file unused.
//!
//! Flat and uncompressed on purpose: it is read on every recording of its binary, and written
//! after every recording that named a new function of it.

use rprof_fs::bytes::{put_text, put_u32, Cursor as Input};
use rprof_profile::StoredFrame;

use crate::ModuleNames;

const MAGIC: &[u8] = b"rprof name cache 2\n";

/// What a names file says about where its names came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Header {
    /// The module's build id, in hex.
    pub(crate) build_id: String,
    /// The tag of the rprof that named them.
    pub(crate) namer: String,
    /// (path, identity) of the files the names came from, the module first.
    pub(crate) sources: Vec<(String, String)>,
}

pub(crate) fn encode(header: &Header, names: &ModuleNames) -> Vec<u8> {
    let texts: usize = names.strings.iter().map(|s| s.len() + 4).sum();
    let mut body =
        Vec::with_capacity(1024 + texts + names.pieces.len() * 24 + names.frames.len() * 13);
    put_text(&mut body, &header.build_id);
    put_text(&mut body, &header.namer);
    put_u32(&mut body, header.sources.len());
    for (path, identity) in &header.sources {
        put_text(&mut body, path);
        put_text(&mut body, identity);
    }
    put_u32(&mut body, names.strings.len());
    for s in &names.strings {
        put_text(&mut body, s);
    }
    put_u32(&mut body, names.pieces.len());
    for &(start, end, first, count) in &names.pieces {
        body.extend_from_slice(&start.to_le_bytes());
        body.extend_from_slice(&end.to_le_bytes());
        body.extend_from_slice(&first.to_le_bytes());
        body.extend_from_slice(&count.to_le_bytes());
    }
    put_u32(&mut body, names.frames.len());
    for f in &names.frames {
        body.extend_from_slice(&f.function.to_le_bytes());
        body.extend_from_slice(&f.file.to_le_bytes());
        body.extend_from_slice(&f.line.to_le_bytes());
        body.push(u8::from(f.inlined));
    }
    let mut out = MAGIC.to_vec();
    put_u32(&mut out, body.len());
    let crc = crc32fast::hash(&body);
    out.extend_from_slice(&body);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

pub(crate) fn decode(bytes: &[u8]) -> Option<(Header, ModuleNames)> {
    let mut outer = Input(bytes.strip_prefix(MAGIC)?);
    let len = usize::try_from(outer.u32()?).ok()?;
    let body = outer.take(len)?;
    let crc = outer.u32()?;
    if !outer.is_empty() || crc32fast::hash(body) != crc {
        return None;
    }
    let mut input = Input(body);
    let build_id = input.text()?.to_string();
    let namer = input.text()?.to_string();
    let count = input.count(8)?;
    let mut sources = Vec::with_capacity(count);
    for _ in 0..count {
        sources.push((input.text()?.to_string(), input.text()?.to_string()));
    }
    let count = input.count(4)?;
    let mut strings = Vec::with_capacity(count);
    for _ in 0..count {
        strings.push(input.text()?.to_string());
    }
    let count = input.count(24)?;
    let mut pieces = Vec::with_capacity(count);
    for _ in 0..count {
        pieces.push((input.u64()?, input.u64()?, input.u32()?, input.u32()?));
    }
    let count = input.count(13)?;
    let mut frames = Vec::with_capacity(count);
    let known = |i: u32| i == u32::MAX || (i as usize) < strings.len();
    for _ in 0..count {
        let (function, file, line) = (input.u32()?, input.u32()?, input.u32()?);
        let inlined = match input.take(1)? {
            [0] => false,
            [1] => true,
            _ => return None,
        };
        if !known(function) || !known(file) {
            return None;
        }
        frames.push(StoredFrame {
            function,
            file,
            line,
            inlined,
        });
    }
    let mut previous_end = 0u64;
    for &(start, end, first, count) in &pieces {
        let last = u64::from(first) + u64::from(count);
        if start < previous_end || start >= end || count == 0 || last > frames.len() as u64 {
            return None;
        }
        previous_end = end;
    }
    if !input.is_empty() {
        return None;
    }
    let header = Header {
        build_id,
        namer,
        sources,
    };
    let names = ModuleNames {
        strings,
        pieces,
        frames,
        index: Default::default(),
    };
    Some((header, names))
}
