//! The names file of one module: what it was named from, and its pieces.
//!
//! Layout (little endian): the magic, then blocks, each a u32 length, that many bytes of body
//! and the CRC-32 of the body. The first block: the build id (hex), the namer's tag, a u32 count
//! of sources and that many (path, identity) pairs, then names. Each later block, an addition
//! appended by a later recording: the namer's tag, then names. Names: a u32 count of strings and
//! the strings, a u32 count of pieces and that many (start u64, end u64, first frame u32, frame
//! count u32), a u32 count of frames and that many (function u32, file u32, line u32, inlined
//! u8). Texts are a u32 length and UTF-8 bytes. Pieces are sorted and do not overlap, each
//! holds at least one frame of those present, and string indices are in range or `u32::MAX`
//! (unknown).
//!
//! A first block that does not read (a bad checksum, a count or index out of range, a byte left
//! over) makes the whole file unused. A later block that does not read, or comes from another
//! namer, ends the file there: an addition cut short (a full disk, two recorders appending at
//! once) loses that addition only. Additions are newer than what precedes them: where pieces
//! overlap, the later ones are kept.
//!
//! Flat and uncompressed on purpose: it is read on every recording of its binary; a recording
//! that named new functions of it appends their pieces rather than writing it all again.

use rprof_fs::bytes::{put_text, put_u32, Cursor as Input};
use rprof_profile::StoredFrame;

use crate::ModuleNames;

pub(crate) const MAGIC: &[u8] = b"rprof name cache 3\n";

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

/// A whole names file: the magic and the first block.
pub(crate) fn encode(header: &Header, names: &ModuleNames) -> Vec<u8> {
    let mut body = Vec::with_capacity(1024 + names_size(names));
    put_text(&mut body, &header.build_id);
    put_text(&mut body, &header.namer);
    put_u32(&mut body, header.sources.len());
    for (path, identity) in &header.sources {
        put_text(&mut body, path);
        put_text(&mut body, identity);
    }
    put_names(&mut body, names);
    let mut out = MAGIC.to_vec();
    put_block(&mut out, &body);
    out
}

/// A block adding `names`, named by `namer`, to the end of a names file.
pub(crate) fn encode_addition(namer: &str, names: &ModuleNames) -> Vec<u8> {
    let mut body = Vec::with_capacity(64 + names_size(names));
    put_text(&mut body, namer);
    put_names(&mut body, names);
    let mut out = Vec::with_capacity(body.len() + 8);
    put_block(&mut out, &body);
    out
}

/// A names file read: where its names came from, the names (additions merged), how many
/// additions were read and how many bytes the blocks read take (less than `bytes` when a block
/// did not read).
pub(crate) fn decode(bytes: &[u8]) -> Option<(Header, ModuleNames, usize, usize)> {
    let mut outer = Input(bytes.strip_prefix(MAGIC)?);
    let mut input = Input(block(&mut outer)?);
    let build_id = input.text()?.to_string();
    let namer = input.text()?.to_string();
    let count = input.count(8)?;
    let mut sources = Vec::with_capacity(count);
    for _ in 0..count {
        sources.push((input.text()?.to_string(), input.text()?.to_string()));
    }
    let mut names = read_names(input)?;
    // The additions, oldest first, merged among themselves before going over the first block's
    // names (one pass over the large first block however many there are).
    let mut added: Option<ModuleNames> = None;
    let mut additions = 0;
    let mut used = bytes.len() - outer.0.len();
    while !outer.is_empty() {
        let Some(body) = block(&mut outer) else {
            break;
        };
        let mut input = Input(body);
        if input.text() != Some(namer.as_str()) {
            break;
        }
        let Some(newer) = read_names(input) else {
            break;
        };
        additions += 1;
        used = bytes.len() - outer.0.len();
        match &mut added {
            Some(added) => added.merge_newer(&newer),
            None => added = Some(newer),
        }
    }
    if let Some(added) = added {
        names.merge_newer(&added);
    }
    let header = Header {
        build_id,
        namer,
        sources,
    };
    Some((header, names, additions, used))
}

fn names_size(names: &ModuleNames) -> usize {
    let texts: usize = names.strings.iter().map(|s| s.len() + 4).sum();
    texts + names.pieces.len() * 24 + names.frames.len() * 13 + 12
}

fn put_block(out: &mut Vec<u8>, body: &[u8]) {
    put_u32(out, body.len());
    out.extend_from_slice(body);
    out.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
}

/// The body of the next block, if it is whole and its checksum matches.
fn block<'a>(outer: &mut Input<'a>) -> Option<&'a [u8]> {
    let len = usize::try_from(outer.u32()?).ok()?;
    let body = outer.take(len)?;
    let crc = outer.u32()?;
    (crc32fast::hash(body) == crc).then_some(body)
}

fn put_names(body: &mut Vec<u8>, names: &ModuleNames) {
    put_u32(body, names.strings.len());
    for s in &names.strings {
        put_text(body, s);
    }
    put_u32(body, names.pieces.len());
    for &(start, end, first, count) in &names.pieces {
        body.extend_from_slice(&start.to_le_bytes());
        body.extend_from_slice(&end.to_le_bytes());
        body.extend_from_slice(&first.to_le_bytes());
        body.extend_from_slice(&count.to_le_bytes());
    }
    put_u32(body, names.frames.len());
    for f in &names.frames {
        body.extend_from_slice(&f.function.to_le_bytes());
        body.extend_from_slice(&f.file.to_le_bytes());
        body.extend_from_slice(&f.line.to_le_bytes());
        body.push(u8::from(f.inlined));
    }
}

/// The names making up the rest of `input`, every count and index checked.
fn read_names(mut input: Input<'_>) -> Option<ModuleNames> {
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
    Some(ModuleNames {
        strings,
        pieces,
        frames,
        index: Default::default(),
        stored: None,
    })
}
