//! The row codec: the plaintext inside a row envelope.
//!
//! A row is a list of named columns, each value tagged with its SQLite storage
//! class (NULL, INTEGER, REAL, TEXT, BLOB) so that it decodes to exactly what
//! was written: 64-bit integers, the exact bits of a REAL (including -0.0),
//! empty strings and empty BLOBs stay distinct from NULL. Columns are named, so
//! a device whose table gained a column still reads rows written before, and a
//! tombstone carries only the primary key of a deleted row.
//!
//! Layout (codec version 1, all integers big-endian):
//!
//! ```text
//! version (1) | kind (1: 1 row, 2 tombstone) | column count (2)
//! per column: name length (4) | name (UTF-8) | value
//! value: tag (1) | body
//!   0 NULL    no body
//!   1 INTEGER 8 bytes, two's complement
//!   2 REAL    8 bytes, IEEE 754 binary64 bits
//!   3 TEXT    length (4) | UTF-8 bytes
//!   4 BLOB    length (4) | bytes
//! ```

use std::ops::Range;

use zeroize::Zeroizing;

use crate::envelope::MAX_PLAINTEXT;
use crate::error::Error;
use crate::primitives::put_lp;
use crate::reader::Reader;

/// Version of the row codec.
pub const CODEC_VERSION: u8 = 1;

/// Most columns a row may have (SQLite's default `SQLITE_MAX_COLUMN`).
pub const MAX_COLUMNS: usize = 2000;

/// Longest column name in bytes.
pub const MAX_NAME_LEN: usize = 1024;

const TAG_NULL: u8 = 0;
const TAG_INTEGER: u8 = 1;
const TAG_REAL: u8 = 2;
const TAG_TEXT: u8 = 3;
const TAG_BLOB: u8 = 4;

/// A value with its SQLite storage class.
#[derive(Clone, Debug)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// A 64-bit signed integer.
    Integer(i64),
    /// An IEEE 754 double, compared and stored bit for bit.
    Real(f64),
    /// UTF-8 text.
    Text(String),
    /// Bytes.
    Blob(Vec<u8>),
}

/// A borrowed [`Value`], used to encode without copying large values.
#[derive(Clone, Copy, Debug)]
pub enum ValueRef<'a> {
    /// SQL NULL.
    Null,
    /// A 64-bit signed integer.
    Integer(i64),
    /// An IEEE 754 double.
    Real(f64),
    /// UTF-8 text.
    Text(&'a str),
    /// Bytes.
    Blob(&'a [u8]),
}

impl Value {
    /// Borrows the value.
    pub fn as_ref(&self) -> ValueRef<'_> {
        match self {
            Self::Null => ValueRef::Null,
            Self::Integer(v) => ValueRef::Integer(*v),
            Self::Real(v) => ValueRef::Real(*v),
            Self::Text(v) => ValueRef::Text(v),
            Self::Blob(v) => ValueRef::Blob(v),
        }
    }

    /// The SQLite name of the value's storage class.
    pub fn type_name(&self) -> &'static str {
        self.as_ref().type_name()
    }
}

impl PartialEq for Value {
    /// Compares storage class and content; REAL values compare by their bits,
    /// so `-0.0 != 0.0` and a NaN equals itself.
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Null, Self::Null) => true,
            (Self::Integer(a), Self::Integer(b)) => a == b,
            (Self::Real(a), Self::Real(b)) => a.to_bits() == b.to_bits(),
            (Self::Text(a), Self::Text(b)) => a == b,
            (Self::Blob(a), Self::Blob(b)) => a == b,
            _ => false,
        }
    }
}

impl ValueRef<'_> {
    /// Copies the value.
    pub fn to_owned(self) -> Value {
        match self {
            Self::Null => Value::Null,
            Self::Integer(v) => Value::Integer(v),
            Self::Real(v) => Value::Real(v),
            Self::Text(v) => Value::Text(v.to_owned()),
            Self::Blob(v) => Value::Blob(v.to_vec()),
        }
    }

    /// The SQLite name of the value's storage class.
    pub fn type_name(self) -> &'static str {
        match self {
            Self::Null => "NULL",
            Self::Integer(_) => "INTEGER",
            Self::Real(_) => "REAL",
            Self::Text(_) => "TEXT",
            Self::Blob(_) => "BLOB",
        }
    }

    /// Size of the value's encoding in bytes.
    pub fn encoded_len(self) -> usize {
        match self {
            Self::Null => 1,
            Self::Integer(_) | Self::Real(_) => 9,
            Self::Text(v) => 5 + v.len(),
            Self::Blob(v) => 5 + v.len(),
        }
    }
}

/// Whether a row holds values or marks a deleted record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RowKind {
    /// A live row with all its columns.
    Row,
    /// A deleted row; the columns are its primary key only.
    Tombstone,
}

/// A decoded row: its kind and named columns in the order they were written.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// Row or tombstone.
    pub kind: RowKind,
    /// Column names and values.
    pub columns: Vec<(String, Value)>,
}

impl Row {
    /// The value of column `name`, if the row has it.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.columns
            .iter()
            .find(|(column, _)| column == name)
            .map(|(_, value)| value)
    }
}

/// Appends the encoding of one value to `out`.
pub fn put_value(out: &mut Vec<u8>, value: ValueRef<'_>) {
    match value {
        ValueRef::Null => out.push(TAG_NULL),
        ValueRef::Integer(v) => {
            out.push(TAG_INTEGER);
            out.extend_from_slice(&v.to_be_bytes());
        }
        ValueRef::Real(v) => {
            out.push(TAG_REAL);
            out.extend_from_slice(&v.to_bits().to_be_bytes());
        }
        ValueRef::Text(v) => {
            out.push(TAG_TEXT);
            put_lp(out, v.as_bytes());
        }
        ValueRef::Blob(v) => {
            out.push(TAG_BLOB);
            put_lp(out, v);
        }
    }
}

/// Where a value lies in an encoded row: numbers by value, TEXT and BLOB by
/// their byte range in the encoding, so a reader can use them without
/// copying.
#[derive(Clone, Debug, PartialEq)]
pub enum ValueSpan {
    /// SQL NULL.
    Null,
    /// A 64-bit signed integer.
    Integer(i64),
    /// An IEEE 754 double.
    Real(f64),
    /// UTF-8 text at this byte range, already checked to be UTF-8.
    Text(Range<usize>),
    /// Bytes at this byte range.
    Blob(Range<usize>),
}

impl ValueSpan {
    /// Borrows the value from `bytes`, the encoding it was read from.
    ///
    /// # Errors
    ///
    /// [`Error::Malformed`] when `bytes` is not the encoding the span came
    /// from (a range out of bounds or text that is not UTF-8).
    pub fn value<'a>(&self, bytes: &'a [u8]) -> Result<ValueRef<'a>, Error> {
        let slice = |range: &Range<usize>| {
            bytes
                .get(range.clone())
                .ok_or_else(|| Error::malformed("row", "a value span lies outside the row"))
        };
        Ok(match self {
            Self::Null => ValueRef::Null,
            Self::Integer(v) => ValueRef::Integer(*v),
            Self::Real(v) => ValueRef::Real(*v),
            Self::Text(range) => ValueRef::Text(
                std::str::from_utf8(slice(range)?)
                    .map_err(|_| Error::malformed("row", "a TEXT span is not UTF-8"))?,
            ),
            Self::Blob(range) => ValueRef::Blob(slice(range)?),
        })
    }
}

/// A decoded row that borrows nothing: its kind, and for each column the
/// byte range of its name and the span of its value in the encoding.
#[derive(Clone, Debug, PartialEq)]
pub struct RowSpans {
    /// Row or tombstone.
    pub kind: RowKind,
    /// Name ranges and value spans, in the order they were written.
    pub columns: Vec<(Range<usize>, ValueSpan)>,
}

impl RowSpans {
    /// The name of column `index`, borrowed from `bytes`, the encoding the
    /// spans came from.
    ///
    /// # Errors
    ///
    /// [`Error::Malformed`] when `bytes` is not that encoding.
    pub fn name<'a>(&self, bytes: &'a [u8], index: usize) -> Result<&'a str, Error> {
        let range = self
            .columns
            .get(index)
            .map(|(name, _)| name.clone())
            .ok_or_else(|| Error::malformed("row", "a column index lies outside the row"))?;
        bytes
            .get(range)
            .and_then(|name| std::str::from_utf8(name).ok())
            .ok_or_else(|| Error::malformed("row", "a column name span is not UTF-8 in the row"))
    }

    /// Copies the names and values out of `bytes`, the encoding the spans
    /// came from.
    ///
    /// # Errors
    ///
    /// [`Error::Malformed`] when `bytes` is not that encoding.
    pub fn to_row(&self, bytes: &[u8]) -> Result<Row, Error> {
        let mut columns = Vec::with_capacity(self.columns.len());
        for (index, (_, value)) in self.columns.iter().enumerate() {
            columns.push((
                self.name(bytes, index)?.to_owned(),
                value.value(bytes)?.to_owned(),
            ));
        }
        Ok(Row {
            kind: self.kind,
            columns,
        })
    }
}

fn read_value(reader: &mut Reader<'_>, column: &str) -> Result<ValueSpan, Error> {
    let tag = reader.u8("value tag")?;
    Ok(match tag {
        TAG_NULL => ValueSpan::Null,
        TAG_INTEGER => ValueSpan::Integer(i64::from_be_bytes(reader.array("INTEGER value")?)),
        TAG_REAL => ValueSpan::Real(f64::from_bits(u64::from_be_bytes(
            reader.array("REAL value")?,
        ))),
        TAG_TEXT => {
            let bytes = reader.lp("TEXT value")?;
            let end = reader.position();
            std::str::from_utf8(bytes).map_err(|err| {
                reader.error(format!(
                    "TEXT value of column {column:?} is not UTF-8: {err}"
                ))
            })?;
            ValueSpan::Text(end - bytes.len()..end)
        }
        TAG_BLOB => {
            let bytes = reader.lp("BLOB value")?;
            let end = reader.position();
            ValueSpan::Blob(end - bytes.len()..end)
        }
        other => {
            return Err(reader.error(format!(
                "unknown value tag {other} in column {column:?}, expected 0 to 4"
            )));
        }
    })
}

/// Encodes a row or tombstone.
///
/// # Errors
///
/// [`Error::Invalid`] for more than [`MAX_COLUMNS`] columns or a name longer
/// than [`MAX_NAME_LEN`], and [`Error::TooLarge`] when the encoding would
/// exceed [`MAX_PLAINTEXT`].
pub fn encode_row<'a, I>(kind: RowKind, columns: I) -> Result<Zeroizing<Vec<u8>>, Error>
where
    I: IntoIterator<Item = (&'a str, ValueRef<'a>)>,
    I::IntoIter: Clone,
{
    let columns = columns.into_iter();
    let mut size = 4usize;
    let mut count = 0usize;
    // Rows are usually narrow: compare names pairwise for a few columns and
    // hash them only for wide rows.
    let mut names: Vec<&str> = Vec::new();
    let mut wide: Option<std::collections::HashSet<&str>> = None;
    for (name, value) in columns.clone() {
        if name.len() > MAX_NAME_LEN {
            return Err(Error::invalid(
                "column name",
                format!("{} bytes, over the limit of {MAX_NAME_LEN}", name.len()),
            ));
        }
        let repeated = match &mut wide {
            Some(set) => !set.insert(name),
            None if names.len() < 32 => {
                let repeated = names.contains(&name);
                names.push(name);
                repeated
            }
            None => {
                let mut set: std::collections::HashSet<&str> = names.drain(..).collect();
                let repeated = !set.insert(name);
                wide = Some(set);
                repeated
            }
        };
        if repeated {
            return Err(Error::invalid(
                "row",
                format!("column {name:?} appears twice"),
            ));
        }
        count += 1;
        size = size.saturating_add(4 + name.len() + value.encoded_len());
    }
    if count > MAX_COLUMNS {
        return Err(Error::invalid(
            "row",
            format!("{count} columns, over the limit of {MAX_COLUMNS}"),
        ));
    }
    if size > MAX_PLAINTEXT {
        return Err(Error::TooLarge {
            what: "row",
            size,
            limit: MAX_PLAINTEXT,
        });
    }

    let mut out = Zeroizing::new(Vec::with_capacity(size));
    out.push(CODEC_VERSION);
    out.push(match kind {
        RowKind::Row => 1,
        RowKind::Tombstone => 2,
    });
    // Checked against MAX_COLUMNS above.
    out.extend_from_slice(&(count as u16).to_be_bytes());
    for (name, value) in columns {
        put_lp(&mut out, name.as_bytes());
        put_value(&mut out, value);
    }
    Ok(out)
}

/// Decodes a row or tombstone into spans of `bytes`, without copying any
/// name or value.
///
/// # Errors
///
/// [`Error::UnsupportedVersion`] for another codec version, and
/// [`Error::Malformed`] for truncated input, trailing bytes, an unknown kind
/// or tag, a name or TEXT value that is not UTF-8, a name over
/// [`MAX_NAME_LEN`], or a repeated column name.
pub fn decode_row_spans(bytes: &[u8]) -> Result<RowSpans, Error> {
    let mut reader = Reader::new("row", bytes);
    let version = reader.u8("codec version")?;
    if version != CODEC_VERSION {
        return Err(Error::UnsupportedVersion {
            what: "row codec",
            version,
            supported: CODEC_VERSION,
        });
    }
    let kind = match reader.u8("row kind")? {
        1 => RowKind::Row,
        2 => RowKind::Tombstone,
        other => {
            return Err(reader.error(format!(
                "unknown row kind {other}, expected 1 (row) or 2 (tombstone)"
            )));
        }
    };
    let count = usize::from(reader.u16("column count")?);
    if count > MAX_COLUMNS {
        return Err(reader.error(format!("{count} columns, over the limit of {MAX_COLUMNS}")));
    }
    let mut columns: Vec<(Range<usize>, ValueSpan)> =
        Vec::with_capacity(count.min(reader.remaining()));
    for _ in 0..count {
        let name = reader.lp("column name")?;
        let end = reader.position();
        if name.len() > MAX_NAME_LEN {
            return Err(reader.error(format!(
                "a column name is {} bytes, over the limit of {MAX_NAME_LEN}",
                name.len()
            )));
        }
        let name = std::str::from_utf8(name)
            .map_err(|err| reader.error(format!("column name is not UTF-8: {err}")))?;
        if columns
            .iter()
            .any(|(known, _)| bytes.get(known.clone()) == Some(name.as_bytes()))
        {
            return Err(reader.error(format!("column {name:?} appears twice")));
        }
        let value = read_value(&mut reader, name)?;
        columns.push((end - name.len()..end, value));
    }
    reader.finish()?;
    Ok(RowSpans { kind, columns })
}

/// Decodes a row or tombstone into owned names and values.
///
/// # Errors
///
/// As [`decode_row_spans`].
pub fn decode_row(bytes: &[u8]) -> Result<Row, Error> {
    decode_row_spans(bytes)?.to_row(bytes)
}

/// Largest TEXT or BLOB that [`encode_single`] accepts: the plaintext limit
/// less the codec version, tag and length.
pub const MAX_VALUE_LEN: usize = MAX_PLAINTEXT - 6;

/// Encodes a single value for [`crate::envelope::Purpose::Value`]: the codec
/// version followed by the value.
///
/// # Errors
///
/// [`Error::TooLarge`] for a TEXT or BLOB longer than [`MAX_VALUE_LEN`],
/// naming the value's own size.
pub fn encode_single(value: ValueRef<'_>) -> Result<Zeroizing<Vec<u8>>, Error> {
    let value_len = match value {
        ValueRef::Text(text) => text.len(),
        ValueRef::Blob(blob) => blob.len(),
        _ => 0,
    };
    if value_len > MAX_VALUE_LEN {
        return Err(Error::TooLarge {
            what: "value",
            size: value_len,
            limit: MAX_VALUE_LEN,
        });
    }
    let size = 1 + value.encoded_len();
    let mut out = Zeroizing::new(Vec::with_capacity(size));
    out.push(CODEC_VERSION);
    put_value(&mut out, value);
    Ok(out)
}

/// Decodes a value written by [`encode_single`].
///
/// # Errors
///
/// As [`decode_row`].
pub fn decode_single(bytes: &[u8]) -> Result<Value, Error> {
    let mut reader = Reader::new("value", bytes);
    let version = reader.u8("codec version")?;
    if version != CODEC_VERSION {
        return Err(Error::UnsupportedVersion {
            what: "value codec",
            version,
            supported: CODEC_VERSION,
        });
    }
    let value = read_value(&mut reader, "value")?;
    reader.finish()?;
    Ok(value.value(bytes)?.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Vec<(String, Value)> {
        vec![
            ("id".into(), Value::Integer(i64::MIN)),
            ("zero".into(), Value::Real(-0.0)),
            ("nan".into(), Value::Real(f64::NAN)),
            ("empty_text".into(), Value::Text(String::new())),
            ("empty_blob".into(), Value::Blob(Vec::new())),
            ("null".into(), Value::Null),
            ("name".into(), Value::Text("Zoë 東京 🎵".into())),
            ("bytes".into(), Value::Blob(vec![0xff, 0x00, 0xfe])),
        ]
    }

    fn encode(kind: RowKind, columns: &[(String, Value)]) -> Zeroizing<Vec<u8>> {
        encode_row(kind, columns.iter().map(|(n, v)| (n.as_str(), v.as_ref()))).unwrap()
    }

    #[test]
    fn spans_borrow_names_and_values_from_the_encoding() {
        let columns = sample();
        let bytes = encode(RowKind::Row, &columns);
        let spans = decode_row_spans(&bytes).unwrap();
        assert_eq!(spans.columns.len(), columns.len());
        for (index, (name, value)) in columns.iter().enumerate() {
            assert_eq!(spans.name(&bytes, index).unwrap(), name);
            let (_, span) = &spans.columns[index];
            assert_eq!(span.value(&bytes).unwrap().to_owned(), *value);
        }
        assert!(spans.name(&bytes, columns.len()).is_err());
        // Spans read against other bytes fail instead of panicking.
        let text = spans
            .columns
            .iter()
            .find(|(_, v)| matches!(v, ValueSpan::Text(r) if !r.is_empty()));
        let (_, text) = text.unwrap();
        assert!(text.value(&bytes[..4]).is_err());
        assert!(text.value(&vec![0xff; bytes.len()]).is_err());
    }

    #[test]
    fn round_trip_keeps_storage_classes() {
        let columns = sample();
        let row = decode_row(&encode(RowKind::Row, &columns)).unwrap();
        assert_eq!(row.kind, RowKind::Row);
        assert_eq!(row.columns, columns);
        assert!(matches!(row.get("zero"), Some(Value::Real(v)) if v.is_sign_negative()));
        assert_ne!(row.get("empty_text"), Some(&Value::Null));
        assert_ne!(row.get("empty_blob"), row.get("empty_text"));
    }

    #[test]
    fn tombstone_round_trip() {
        let columns = vec![("id".to_string(), Value::Integer(4))];
        let row = decode_row(&encode(RowKind::Tombstone, &columns)).unwrap();
        assert_eq!(row.kind, RowKind::Tombstone);
        assert_eq!(row.columns, columns);
    }

    #[test]
    fn decode_rejects_every_truncation() {
        let bytes = encode(RowKind::Row, &sample());
        for len in 0..bytes.len() {
            assert!(decode_row(&bytes[..len]).is_err(), "length {len}");
        }
    }

    #[test]
    fn decode_rejects_bad_tag_and_duplicate_name() {
        let columns = vec![("a".to_string(), Value::Null)];
        let mut bytes = encode(RowKind::Row, &columns).to_vec();
        *bytes.last_mut().unwrap() = 9;
        let err = decode_row(&bytes).unwrap_err().to_string();
        assert!(err.contains("unknown value tag 9"), "{err}");

        let twice = [("a", ValueRef::Null), ("a", ValueRef::Null)];
        let err = encode_row(RowKind::Row, twice).unwrap_err().to_string();
        assert!(err.contains("appears twice"), "{err}");

        let mut bytes = encode(
            RowKind::Row,
            &[
                ("a".to_string(), Value::Null),
                ("b".to_string(), Value::Null),
            ],
        )
        .to_vec();
        // The second name's single byte sits before its one-byte NULL value.
        let second_name = bytes.len() - 2;
        bytes[second_name] = b'a';
        let err = decode_row(&bytes).unwrap_err().to_string();
        assert!(err.contains("appears twice"), "{err}");
    }

    #[test]
    fn wide_row_rejects_repeated_name() {
        let names: Vec<String> = (0..40).map(|i| format!("c{i}")).collect();
        let mut columns: Vec<(&str, ValueRef<'_>)> =
            names.iter().map(|n| (n.as_str(), ValueRef::Null)).collect();
        assert!(encode_row(RowKind::Row, columns.iter().copied()).is_ok());
        columns.push(("c3", ValueRef::Integer(1)));
        let err = encode_row(RowKind::Row, columns.iter().copied()).unwrap_err();
        assert!(err.to_string().contains("\"c3\" appears twice"), "{err}");
    }

    #[test]
    fn decode_rejects_invalid_utf8_text() {
        let columns = vec![("t".to_string(), Value::Text("ab".into()))];
        let mut bytes = encode(RowKind::Row, &columns).to_vec();
        let last = bytes.len() - 1;
        bytes[last] = 0xff;
        let err = decode_row(&bytes).unwrap_err().to_string();
        assert!(err.contains("not UTF-8"), "{err}");
    }

    #[test]
    fn single_value_round_trip() {
        for (_, value) in sample() {
            let bytes = encode_single(value.as_ref()).unwrap();
            assert_eq!(decode_single(&bytes).unwrap(), value);
        }
        assert!(decode_single(&[CODEC_VERSION]).is_err());
        assert!(decode_single(&[2, 0]).is_err());
    }

    #[test]
    fn oversized_value_names_its_own_size() {
        let big = vec![0u8; MAX_VALUE_LEN + 1];
        let err = encode_single(ValueRef::Blob(&big)).unwrap_err().to_string();
        assert!(
            err.contains(&format!("{} bytes", MAX_VALUE_LEN + 1)),
            "{err}"
        );
        assert!(err.contains(&format!("limit of {MAX_VALUE_LEN}")), "{err}");
        let fits = vec![0u8; MAX_VALUE_LEN];
        assert!(encode_single(ValueRef::Blob(&fits)).is_ok());
    }

    #[test]
    fn oversized_row_is_rejected_with_limit() {
        let big = vec![0u8; MAX_PLAINTEXT];
        let err = encode_row(RowKind::Row, [("b", ValueRef::Blob(&big))]).unwrap_err();
        assert!(
            err.to_string().contains(&MAX_PLAINTEXT.to_string()),
            "{err}"
        );
    }

    fn value_strategy() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<i64>().prop_map(Value::Integer),
            any::<u64>().prop_map(|bits| Value::Real(f64::from_bits(bits))),
            ".{0,40}".prop_map(Value::Text),
            proptest::collection::vec(any::<u8>(), 0..64).prop_map(Value::Blob),
        ]
    }

    proptest! {
        #[test]
        fn any_row_round_trips(
            values in proptest::collection::vec(value_strategy(), 0..12),
            tombstone in any::<bool>(),
        ) {
            let columns: Vec<(String, Value)> = values
                .into_iter()
                .enumerate()
                .map(|(i, v)| (format!("c{i}"), v))
                .collect();
            let kind = if tombstone { RowKind::Tombstone } else { RowKind::Row };
            let row = decode_row(&encode(kind, &columns)).unwrap();
            prop_assert_eq!(row.kind, kind);
            prop_assert_eq!(row.columns, columns);
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode_row(&bytes);
            let _ = decode_single(&bytes);
        }
    }
}
