//! The record format of cache segments, and a decoder that survives torn and corrupt bytes.
//!
//! A segment is a run of records `[len: u32 LE][blake3(payload): 32 bytes][payload: len bytes]`,
//! where `payload = key (32 bytes) ++ value (a JSON object)`. The cache (`super`) writes whole
//! segments with one `put`, so a crash normally leaves either all of a segment or none of it; the
//! decoder still assumes the worst (a store that truncates, a flipped bit) and keeps every record
//! whose checksum matches, skipping the damage in between.

/// Bytes before the payload: the length and the checksum.
pub(super) const HEADER: usize = 4 + 32;
/// Length of a key.
pub(super) const KEY: usize = 32;
/// Largest payload accepted when decoding. A length field above it is damage, not a record: no
/// single teacher answer comes near 64 MiB, and the bound keeps resynchronisation cheap.
pub(super) const MAX_PAYLOAD: usize = 64 << 20;

/// A cache key: the blake3 hash of a canonical request description.
pub(super) type Key = [u8; KEY];

/// Append one record for `key` and the serialised `value` to `out`.
pub(super) fn encode_record(out: &mut Vec<u8>, key: &Key, value: &[u8]) {
    let len = KEY + value.len();
    // A value over 4 GiB cannot be framed; the caller refuses values above MAX_PAYLOAD first.
    let len32 = u32::try_from(len).expect("invariant: caller bounds the value by MAX_PAYLOAD");
    let mut hasher = blake3::Hasher::new();
    hasher.update(key);
    hasher.update(value);
    out.extend_from_slice(&len32.to_le_bytes());
    out.extend_from_slice(hasher.finalize().as_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(value);
}

/// One intact record found in a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Record<'a> {
    /// Byte offset of the record's header in the segment.
    pub offset: usize,
    /// The key.
    pub key: Key,
    /// The serialised value.
    pub value: &'a [u8],
    /// The whole record, header included, for copying into a merged segment unchanged.
    pub raw: &'a [u8],
}

/// A stretch of bytes that held no intact record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Damage {
    /// Where the damage starts.
    pub offset: usize,
    /// How many bytes were skipped (to the next intact record or the end of the segment).
    pub len: usize,
}

/// The intact records of a segment, in order, and the damaged stretches between them.
#[derive(Debug, Default)]
pub(super) struct Decoded<'a> {
    /// Records whose length and checksum are right.
    pub records: Vec<Record<'a>>,
    /// Skipped stretches: a torn tail is one, and so is each corrupt stretch in the middle
    /// (one stretch may have held several records; they cannot be told apart).
    pub damage: Vec<Damage>,
}

/// Parse the record starting at `offset`, if one starts there and is intact.
fn record_at(buf: &[u8], offset: usize) -> Option<Record<'_>> {
    let header = buf.get(offset..offset.checked_add(HEADER)?)?;
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    if !(KEY + 2..=MAX_PAYLOAD).contains(&len) {
        return None;
    }
    let end = offset + HEADER + len;
    let payload = buf.get(offset + HEADER..end)?;
    // Cheap filter before hashing: a value is a JSON object. While resynchronising, this rejects
    // almost every wrong offset without hashing up to 64 MiB at each.
    if payload[KEY] != b'{' || payload[len - 1] != b'}' {
        return None;
    }
    if blake3::hash(payload).as_bytes() != &header[4..HEADER] {
        return None;
    }
    let mut key = [0u8; KEY];
    key.copy_from_slice(&payload[..KEY]);
    Some(Record { offset, key, value: &payload[KEY..], raw: &buf[offset..end] })
}

/// Decode a segment: every intact record, and where bytes were skipped. Never fails.
pub(super) fn decode(buf: &[u8]) -> Decoded<'_> {
    let mut out = Decoded::default();
    let mut offset = 0;
    while offset < buf.len() {
        if let Some(record) = record_at(buf, offset) {
            offset += record.raw.len();
            out.records.push(record);
            continue;
        }
        // Damage: scan forward, byte by byte, for the next offset where an intact record starts.
        // The 32-byte checksum makes a false match practically impossible.
        let start = offset;
        let next = (start + 1..buf.len()).find(|&o| record_at(buf, o).is_some());
        let stop = next.unwrap_or(buf.len());
        out.damage.push(Damage { offset: start, len: stop - start });
        offset = stop;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(values: &[&str]) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, v) in values.iter().enumerate() {
            encode_record(&mut out, &[i as u8; KEY], v.as_bytes());
        }
        out
    }

    #[test]
    fn round_trip() {
        let buf = segment(&[r#"{"a":1}"#, r#"{"b":"two"}"#, "{}"]);
        let d = decode(&buf);
        assert!(d.damage.is_empty());
        let values: Vec<&[u8]> = d.records.iter().map(|r| r.value).collect();
        assert_eq!(values, vec![&br#"{"a":1}"#[..], br#"{"b":"two"}"#, b"{}"]);
        assert_eq!(d.records[1].key, [1u8; KEY]);
        assert_eq!(d.records.iter().map(|r| r.raw.len()).sum::<usize>(), buf.len());
    }

    #[test]
    fn empty_segment_is_empty() {
        let d = decode(&[]);
        assert!(d.records.is_empty() && d.damage.is_empty());
    }

    #[test]
    fn torn_tail_is_one_damage() {
        let buf = segment(&[r#"{"a":1}"#, r#"{"b":2}"#]);
        let first = decode(&buf).records[0].raw.len();
        for cut in first + 1..buf.len() {
            let d = decode(&buf[..cut]);
            assert_eq!(d.records.len(), 1, "cut at {cut}");
            assert_eq!(d.damage, vec![Damage { offset: first, len: cut - first }]);
        }
    }

    #[test]
    fn flipped_byte_anywhere_loses_only_its_record() {
        let buf = segment(&[r#"{"a":1}"#, r#"{"b":2}"#, r#"{"c":3}"#]);
        let len1 = decode(&buf).records[0].raw.len();
        let len2 = decode(&buf).records[1].raw.len();
        // Every byte of the middle record, including its length field.
        for at in len1..len1 + len2 {
            let mut bad = buf.clone();
            bad[at] ^= 0x5a;
            let d = decode(&bad);
            let keys: Vec<u8> = d.records.iter().map(|r| r.key[0]).collect();
            assert_eq!(keys, vec![0, 2], "flip at {at}");
            assert_eq!(d.damage.len(), 1);
        }
    }
}
