//! Message-search results that a mail gateway pushes ("Export to Pullback"), as CSV or JSON.
//!
//! Each row names one message and the mailboxes it reached, and each recipient of a row
//! becomes one alert draft, keyed so that the same message pushed twice is still one alert per
//! recipient. The header row decides which column is which, never the columns' order. A row
//! that cannot be read is reported with its line and the reason, and its neighbours are kept;
//! only a header that cannot be read refuses the whole input.
//!
//! CSV is read as a stream: [`ExportReader`] takes the body in chunks of any size and holds
//! at most one row, and never more than [`MAX_ROW_BYTES`] of it.
//!
//! Each draft's `raw` is the row as a JSON object. A row listing more than
//! [`FULL_ROW_RECIPIENTS`] recipients is the exception: a copy per recipient of the whole list
//! would grow with its square, so each draft's copy lists only its own recipient, and a note
//! says so.
//!
//! Bytes that are not UTF-8 are replaced with U+FFFD and the draft gets a note saying which
//! column held them, because exports in a legacy encoding still name the right message and
//! mailboxes. The exceptions are `Message_ID` and `Recipients`: a replaced byte there would
//! point a quarantine at the wrong message or mailbox, so such a row is reported as bad.

use std::borrow::Cow;
use std::collections::HashSet;

use csv_core::{ReadRecordResult, Reader};
use pullback_domain::{AlertDraft, AlertKind, MessageId, RejectedEvent, Timestamp};
use serde_json::{Map, Value, json};

use crate::shared::{address, content_key, parse_time, quoted, split_address_list, type_name};

/// The longest row read, counted in input bytes with its quotes and line end. A longer row is
/// reported as bad and skipped to its end without being held in memory.
pub const MAX_ROW_BYTES: usize = 1 << 20;

/// The most columns a header may have.
pub const MAX_COLUMNS: usize = 512;

/// The row buffer's starting size, and what it shrinks back to after a long row.
const ROW_BUFFER_BYTES: usize = 4 * 1024;

/// A row buffer grown past this by a long row is shrunk again once the row is done.
const ROW_BUFFER_KEPT_BYTES: usize = 64 * 1024;

/// A row with more recipients than this gives each draft a copy of the row that lists only
/// the draft's own recipient.
pub const FULL_ROW_RECIPIENTS: usize = 100;

/// The most recipients one row may list; a row with more is reported as bad, so that one row
/// cannot turn into an unbounded number of alerts at once.
pub const MAX_ROW_RECIPIENTS: usize = 10_000;

/// How much of a skipped row is kept, so that an operator can recognise it.
const PREVIEW_BYTES: usize = 256;

const BOM: &[u8; 3] = b"\xEF\xBB\xBF";

/// What became of one data row of an export.
#[derive(Clone, Debug, PartialEq)]
pub enum RowOutcome {
    /// The row was read: one draft per recipient, in the order the row lists them. `line` is
    /// where the row is, as in [`RowError::line`].
    Alerts { line: u64, drafts: Vec<AlertDraft> },
    /// The row could not be read. Its neighbours are not affected.
    Bad(RowError),
}

/// A data row that could not be read, and the record the store keeps of it.
#[derive(Clone, Debug, PartialEq)]
pub struct RowError {
    /// Where the row is. For CSV, the physical line the row starts on, counted from 1 with the
    /// header as line 1, so quoted line breaks in earlier rows are counted. For JSON, the
    /// row's index in its array, counted from 0 as in the reason's `rows[0]`.
    pub line: u64,
    /// What was wrong, starting with where: `line 7: Recipients is empty`, or
    /// `rows[3]: Message_ID is missing`.
    pub reason: String,
    /// The record to keep: the row as a JSON object (the header names as keys, extra fields
    /// as `(column 10)`...), keyed by `sha256:` and the hash of that object. A row too long or
    /// too wide to hold is kept as `{"line", "bytes", "start"}`: its line, its length, and its
    /// first 256 bytes.
    pub event: RejectedEvent,
}

impl RowError {
    fn new(line: u64, reason: String, raw: Value) -> RowError {
        let key = content_key(&raw);
        let (raw, _) = bounded_row(&raw, None);
        RowError {
            line,
            event: RejectedEvent {
                key,
                reason: reason.clone(),
                raw,
            },
            reason,
        }
    }
}

/// Why a whole export was refused. Only the header, or for JSON the body's shape, can do
/// this; a bad data row is a [`RowOutcome::Bad`] instead.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ExportError {
    /// The input ended before a header row: it was empty, or held only blank lines.
    #[error("the export is empty: it has no header row")]
    NoHeader,
    /// The header lacks `Message_ID` or `Recipients`, without which no alert can be made.
    #[error("{}", missing_columns(.missing, .found))]
    MissingColumns {
        /// The required columns that are absent, by their names in the known export header.
        missing: Vec<&'static str>,
        /// The header's column names as given.
        found: Vec<String>,
    },
    /// Two header names read as the same known column (`Message_ID` and `Message-ID`), so
    /// which one to read would be a guess.
    #[error("the columns {first:?} and {second:?} both name the {column} column; keep one")]
    DuplicateColumn {
        /// The column's name in the known export header.
        column: &'static str,
        first: String,
        second: String,
    },
    /// The header row is longer than [`MAX_ROW_BYTES`]: likely not a CSV export at all.
    #[error("the header row is longer than 1 MiB")]
    HeaderTooLong,
    /// The header has more than [`MAX_COLUMNS`] columns.
    #[error("the header has more than 512 columns")]
    TooManyColumns,
    /// A JSON push whose body is neither an array of rows nor an object holding one.
    #[error(
        "expected a JSON array of row objects, or an object whose `rows` or `messages` field \
         holds one; found {found}"
    )]
    JsonShape { found: String },
}

/// Reads a CSV export pushed in chunks of any size, and turns each data row into a
/// [`RowOutcome`] as soon as the row is complete.
///
/// ```text
/// let mut reader = ExportReader::new(now);
/// let mut outcomes = Vec::new();
/// for chunk in body { reader.feed(chunk, &mut outcomes)?; /* drain outcomes */ }
/// reader.finish(&mut outcomes)?;
/// ```
///
/// The CSV dialect is the common one: comma separated, fields optionally in double quotes with
/// `""` for a quote inside, line ends CRLF or LF, an optional UTF-8 byte order mark. Blank
/// lines, and rows whose fields are all empty (spreadsheets write those), are skipped.
#[derive(Debug)]
pub struct ExportReader {
    csv: Reader,
    /// Whether csv_core has been given input yet.
    csv_started: bool,
    /// The time given to rows whose Date is missing or unreadable: when the export arrived.
    now: Timestamp,
    /// How much of a byte order mark the input has matched so far, while that is undecided.
    bom_matched: Option<usize>,
    header: Option<Header>,
    row: RowBuffer,
    lines: LineCounter,
    rows_read: u64,
    /// A header problem; every later call returns it again.
    failed: Option<ExportError>,
    finished: bool,
}

impl ExportReader {
    /// A reader for one export; `now` is the time given to rows without a readable Date.
    pub fn new(now: Timestamp) -> ExportReader {
        ExportReader {
            csv: Reader::new(),
            csv_started: false,
            now,
            bom_matched: Some(0),
            header: None,
            row: RowBuffer::new(),
            lines: LineCounter::default(),
            rows_read: 0,
            failed: None,
            finished: false,
        }
    }

    /// Reads the next bytes of the export and appends an outcome to `out` for every data row
    /// they complete. Chunks may split anything: the byte order mark, a CRLF, a quoted field,
    /// a UTF-8 character. An error means the header cannot be read; the export is refused
    /// and every later call returns the same error.
    pub fn feed(&mut self, bytes: &[u8], out: &mut Vec<RowOutcome>) -> Result<(), ExportError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        if self.finished {
            return Ok(());
        }
        let (held_back, rest) = self.strip_bom(bytes);
        self.read(held_back, out)?;
        self.read(rest, out)
    }

    /// Says that the export ended, and appends the outcome of a last row that had no line end.
    /// An export without a header row is refused here. Later calls to `feed` and `finish` do
    /// nothing.
    pub fn finish(&mut self, out: &mut Vec<RowOutcome>) -> Result<(), ExportError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        if self.finished {
            return Ok(());
        }
        if let Some(matched) = self.bom_matched.take() {
            // The input was shorter than a byte order mark: what was held back is data.
            self.read(&BOM[..matched], out)?;
        }
        loop {
            let (result, _) = self.row.read(&mut self.csv, &[]);
            // InputEmpty would mean csv_core has nothing more to give; it is not expected at
            // the end, but must not loop.
            if matches!(result, ReadRecordResult::End | ReadRecordResult::InputEmpty) {
                break;
            }
            self.after_read(result, out)?;
        }
        self.finished = true;
        match self.header {
            Some(_) => Ok(()),
            None => self.fail(ExportError::NoHeader),
        }
    }

    /// Data rows read so far, good or bad; the header, blank lines and empty rows not counted.
    pub fn rows_read(&self) -> u64 {
        self.rows_read
    }

    /// The bytes the reader holds between calls: the buffer of the row being read. It grows
    /// only while a long row is read, never past [`MAX_ROW_BYTES`], and shrinks after.
    pub fn buffered_bytes(&self) -> usize {
        self.row.output.capacity()
            + self.row.ends.capacity() * size_of::<usize>()
            + self.row.preview.capacity()
    }

    /// Drops a UTF-8 byte order mark from the start of the input, even one split across
    /// chunks. Returns the bytes held back by earlier calls that turn out not to be a mark,
    /// and the rest of this chunk.
    fn strip_bom<'b>(&mut self, bytes: &'b [u8]) -> (&'static [u8], &'b [u8]) {
        let Some(mut matched) = self.bom_matched else {
            return (&[], bytes);
        };
        let mut at = 0;
        while matched < BOM.len() && at < bytes.len() {
            if bytes[at] != BOM[matched] {
                // Not a mark: the matched bytes, earlier ones and this chunk's, are data.
                self.bom_matched = None;
                return (&BOM[..matched], &bytes[at..]);
            }
            matched += 1;
            at += 1;
        }
        self.bom_matched = (matched < BOM.len()).then_some(matched);
        (&[], &bytes[at..])
    }

    fn read(&mut self, mut input: &[u8], out: &mut Vec<RowOutcome>) -> Result<(), ExportError> {
        while !input.is_empty() {
            if self.row.start_line.is_none() {
                // Blank lines between rows: csv_core would skip them too, but the row's line
                // is only known once its first byte is.
                let blank = input
                    .iter()
                    .take_while(|b| matches!(b, b'\r' | b'\n'))
                    .count();
                self.lines.advance(&input[..blank]);
                input = &input[blank..];
                if input.is_empty() {
                    break;
                }
                self.row.start_line = Some(self.lines.next_line());
            }

            // csv_core drops a byte order mark of its own, but only when its very first input
            // holds all of it. One byte first keeps the chunking from changing what is read.
            let next = if self.csv_started {
                input
            } else {
                self.csv_started = true;
                &input[..1]
            };
            let (result, consumed) = self.row.read(&mut self.csv, next);
            self.lines.advance(&input[..consumed]);
            input = &input[consumed..];
            self.after_read(result, out)?;
        }
        Ok(())
    }

    fn after_read(
        &mut self,
        result: ReadRecordResult,
        out: &mut Vec<RowOutcome>,
    ) -> Result<(), ExportError> {
        if self.row.bytes > MAX_ROW_BYTES && self.row.skip != Some(Skip::TooLong) {
            if self.header.is_none() {
                return self.fail(ExportError::HeaderTooLong);
            }
            self.row.start_skipping(Skip::TooLong);
        }
        match result {
            ReadRecordResult::InputEmpty | ReadRecordResult::End => Ok(()),
            ReadRecordResult::OutputFull => {
                self.row.make_room();
                Ok(())
            }
            ReadRecordResult::OutputEndsFull => {
                if self.header.is_none() {
                    return self.fail(ExportError::TooManyColumns);
                }
                self.row.drop_fields();
                Ok(())
            }
            ReadRecordResult::Record => self.end_row(out),
        }
    }

    fn end_row(&mut self, out: &mut Vec<RowOutcome>) -> Result<(), ExportError> {
        let line = self.row.start_line.unwrap_or(self.lines.next_line());
        let result = match &self.header {
            None => self.read_header(),
            Some(header) => {
                if let Some(outcome) = read_row(header, &self.row, line, self.now) {
                    self.rows_read += 1;
                    out.push(outcome);
                }
                Ok(())
            }
        };
        self.row.clear();
        result
    }

    fn read_header(&mut self) -> Result<(), ExportError> {
        if self.row.field_count() > MAX_COLUMNS {
            return self.fail(ExportError::TooManyColumns);
        }
        let names = self
            .row
            .fields()
            .map(|name| String::from_utf8_lossy(name).into_owned())
            .collect();
        match Header::new(names) {
            Ok(header) => {
                self.header = Some(header);
                Ok(())
            }
            Err(err) => self.fail(err),
        }
    }

    fn fail(&mut self, err: ExportError) -> Result<(), ExportError> {
        self.failed = Some(err.clone());
        Err(err)
    }
}

/// Counts physical lines as csv_core ends records: at LF, CRLF, or a CR alone.
#[derive(Debug, Default)]
struct LineCounter {
    /// Line ends seen, a CRLF counted once.
    ends: u64,
    /// The last byte seen was a CR: a line end, unless an LF follows to complete it.
    after_cr: bool,
}

impl LineCounter {
    fn advance(&mut self, bytes: &[u8]) {
        for &b in bytes {
            // An LF ends a line, completing a CR before it if any; anything after a lone CR
            // means that CR ended one.
            if b == b'\n' || self.after_cr {
                self.ends += 1;
            }
            self.after_cr = b == b'\r';
        }
    }

    /// The line, from 1, of the next byte when that byte is not an LF.
    fn next_line(&self) -> u64 {
        1 + self.ends + u64::from(self.after_cr)
    }
}

/// Why the row being read is skipped rather than kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Skip {
    TooLong,
    TooManyFields,
}

/// The row being read: its fields so far, where it started, and whether it is being skipped.
#[derive(Debug)]
struct RowBuffer {
    /// The fields' bytes, unquoted and one after the other. Its length is what csv_core may
    /// fill; it grows while a row is read and shrinks after a long one.
    output: Vec<u8>,
    /// Where each field ends in `output`; one more slot than a header may have columns.
    ends: Vec<usize>,
    nout: usize,
    nend: usize,
    /// The line the row starts on; `None` between rows.
    start_line: Option<u64>,
    /// The row's length so far in input bytes.
    bytes: usize,
    /// The row's first input bytes, for the record of a skipped row.
    preview: Vec<u8>,
    skip: Option<Skip>,
    /// Fields counted and let go because the row had more than `ends` holds.
    dropped_fields: usize,
}

impl RowBuffer {
    fn new() -> RowBuffer {
        RowBuffer {
            output: vec![0; ROW_BUFFER_BYTES],
            ends: vec![0; MAX_COLUMNS + 1],
            nout: 0,
            nend: 0,
            start_line: None,
            bytes: 0,
            preview: Vec::with_capacity(PREVIEW_BYTES),
            skip: None,
            dropped_fields: 0,
        }
    }

    /// Hands csv_core the next input; an empty `input` means the export ended. Returns what
    /// csv_core said and how many input bytes it consumed.
    fn read(&mut self, csv: &mut Reader, input: &[u8]) -> (ReadRecordResult, usize) {
        let (result, consumed, written, ended) = csv.read_record(
            input,
            &mut self.output[self.nout..],
            &mut self.ends[self.nend..],
        );
        self.nout += written;
        self.nend += ended;
        self.bytes += consumed;
        let room = PREVIEW_BYTES.saturating_sub(self.preview.len());
        self.preview.extend_from_slice(&input[..consumed.min(room)]);
        (result, consumed)
    }

    /// Lets go of the row's content; the rest of it is read and discarded as it comes.
    fn start_skipping(&mut self, why: Skip) {
        self.skip = Some(why);
        self.nout = 0;
        self.shrink();
    }

    fn make_room(&mut self) {
        if self.skip.is_some() {
            self.nout = 0;
        } else {
            // The row is at most MAX_ROW_BYTES long (or it would be skipped), and its fields
            // are never longer than the row.
            let grown = (self.output.len() * 2).min(MAX_ROW_BYTES + 1);
            self.output.resize(grown, 0);
        }
    }

    /// More fields than a header may have columns: count them, keep none.
    fn drop_fields(&mut self) {
        self.dropped_fields += self.nend;
        self.nend = 0;
        if self.skip.is_none() {
            self.start_skipping(Skip::TooManyFields);
        }
    }

    fn field_count(&self) -> usize {
        self.dropped_fields + self.nend
    }

    /// The fields of a complete row that was not skipped.
    fn fields(&self) -> impl Iterator<Item = &[u8]> {
        let mut start = 0;
        self.ends[..self.nend].iter().map(move |&end| {
            let field = &self.output[start..end];
            start = end;
            field
        })
    }

    fn clear(&mut self) {
        self.nout = 0;
        self.nend = 0;
        self.start_line = None;
        self.bytes = 0;
        self.preview.clear();
        self.skip = None;
        self.dropped_fields = 0;
        if self.output.len() > ROW_BUFFER_KEPT_BYTES {
            self.shrink();
        }
    }

    fn shrink(&mut self) {
        self.output.truncate(ROW_BUFFER_BYTES);
        self.output.shrink_to_fit();
    }
}

/// The columns Pullback reads; all others are only kept in the row's raw object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Column {
    MessageId,
    Recipients,
    Date,
    Sender,
    HeaderFrom,
    Subject,
}

impl Column {
    const REQUIRED: [Column; 2] = [Column::MessageId, Column::Recipients];

    /// The column's name in the known export header.
    fn name(self) -> &'static str {
        match self {
            Column::MessageId => "Message_ID",
            Column::Recipients => "Recipients",
            Column::Date => "Date",
            Column::Sender => "Sender",
            Column::HeaderFrom => "Header_From",
            Column::Subject => "Subject",
        }
    }

    /// Reads a header name or JSON key, ignoring case and everything but letters and digits:
    /// `Message_ID`, `Message-ID`, `message id` and `MessageID` all name one column.
    fn from_name(name: &str) -> Option<Column> {
        let squashed: String = name
            .chars()
            .filter(|c| c.is_alphanumeric())
            .flat_map(char::to_lowercase)
            .collect();
        match squashed.as_str() {
            "messageid" => Some(Column::MessageId),
            "recipients" => Some(Column::Recipients),
            "date" => Some(Column::Date),
            "sender" => Some(Column::Sender),
            "headerfrom" => Some(Column::HeaderFrom),
            "subject" => Some(Column::Subject),
            _ => None,
        }
    }
}

/// The first known column that two names both give, with those two names.
fn duplicate<'a>(names: impl IntoIterator<Item = &'a str>) -> Option<(Column, &'a str, &'a str)> {
    let mut seen: Vec<(Column, &str)> = Vec::new();
    for name in names {
        let Some(column) = Column::from_name(name) else {
            continue;
        };
        if let Some((_, first)) = seen.iter().find(|(known, _)| *known == column) {
            return Some((column, first, name));
        }
        seen.push((column, name));
    }
    None
}

/// The header row: which column is where.
#[derive(Debug)]
struct Header {
    /// The names as given, a repeated one made unique with ` (2)`, ` (3)`...: the keys of
    /// each row's raw object.
    names: Vec<String>,
    /// The known column at each position.
    columns: Vec<Option<Column>>,
}

impl Header {
    fn new(names: Vec<String>) -> Result<Header, ExportError> {
        if let Some((column, first, second)) = duplicate(names.iter().map(String::as_str)) {
            return Err(ExportError::DuplicateColumn {
                column: column.name(),
                first: first.to_owned(),
                second: second.to_owned(),
            });
        }
        let columns: Vec<Option<Column>> = names.iter().map(|n| Column::from_name(n)).collect();
        let missing: Vec<&'static str> = Column::REQUIRED
            .into_iter()
            .filter(|required| !columns.contains(&Some(*required)))
            .map(Column::name)
            .collect();
        if !missing.is_empty() {
            return Err(ExportError::MissingColumns {
                missing,
                found: names,
            });
        }
        Ok(Header {
            names: unique_names(names),
            columns,
        })
    }

    fn len(&self) -> usize {
        self.names.len()
    }

    /// The row as a JSON object keyed by the header's names; fields past the header's last
    /// column are keyed by their position, `(column 10)`.
    fn raw_row(&self, cells: &[Cell]) -> Value {
        let mut map = Map::with_capacity(cells.len());
        for (index, cell) in cells.iter().enumerate() {
            let key = match self.names.get(index) {
                Some(name) => name.clone(),
                None => format!("(column {})", index + 1),
            };
            map.insert(key, Value::String(cell.text.clone()));
        }
        Value::Object(map)
    }

    /// The known columns of a row that has as many fields as the header.
    fn row_fields(&self, cells: Vec<Cell>) -> Result<RowFields, String> {
        let mut fields = RowFields::default();
        for ((cell, name), column) in cells.into_iter().zip(&self.names).zip(&self.columns) {
            if !cell.utf8 {
                if let Some(required) = column.filter(|c| Column::REQUIRED.contains(c)) {
                    return Err(format!("{} is not valid UTF-8", required.name()));
                }
                fields.notes.push(format!(
                    "{name} is not valid UTF-8; the bytes that are not were replaced with U+FFFD"
                ));
            }
            if let Some(column) = column {
                fields.set(*column, cell.text);
            }
        }
        Ok(fields)
    }
}

fn unique_names(names: Vec<String>) -> Vec<String> {
    let mut seen = HashSet::new();
    names
        .into_iter()
        .map(|name| {
            let mut unique = name.clone();
            let mut n = 1;
            while !seen.insert(unique.clone()) {
                n += 1;
                unique = format!("{name} ({n})");
            }
            unique
        })
        .collect()
}

fn missing_columns(missing: &[&str], found: &[String]) -> String {
    const SHOWN: usize = 20;
    let mut names = found
        .iter()
        .take(SHOWN)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    if found.len() > SHOWN {
        names.push_str(&format!(" and {} more", found.len() - SHOWN));
    }
    let mut message = format!(
        "the CSV has no {} column (columns found: {names})",
        missing.join(" or ")
    );
    if found.len() == 1 && found[0].contains([';', '\t']) {
        message.push_str(
            "; its columns seem to be separated by ';' or tabs, but an export must use commas",
        );
    }
    message
}

/// One decoded field of a CSV row.
struct Cell {
    text: String,
    /// Whether the bytes were UTF-8; when not, `text` has U+FFFD in place of the bad bytes.
    utf8: bool,
}

impl Cell {
    fn decode(bytes: &[u8]) -> Cell {
        match String::from_utf8_lossy(bytes) {
            Cow::Borrowed(text) => Cell {
                text: text.to_owned(),
                utf8: true,
            },
            Cow::Owned(text) => Cell { text, utf8: false },
        }
    }
}

/// A finished data row: its outcome, or `None` when all its fields are empty.
fn read_row(header: &Header, row: &RowBuffer, line: u64, now: Timestamp) -> Option<RowOutcome> {
    if let Some(skip) = row.skip {
        return Some(skipped_row(skip, header, row, line));
    }
    let cells: Vec<Cell> = row.fields().map(Cell::decode).collect();
    if cells.iter().all(|cell| cell.text.trim().is_empty()) {
        return None;
    }

    let raw = header.raw_row(&cells);
    if cells.len() != header.len() {
        let reason = format!(
            "line {line}: the row has {} fields, the header has {}",
            cells.len(),
            header.len()
        );
        return Some(RowOutcome::Bad(RowError::new(line, reason, raw)));
    }
    let location = format!("line {line}");
    Some(outcome(&location, line, header.row_fields(cells), raw, now))
}

fn skipped_row(skip: Skip, header: &Header, row: &RowBuffer, line: u64) -> RowOutcome {
    let reason = match skip {
        Skip::TooLong => format!(
            "line {line}: the row is {} bytes long, more than the limit of 1 MiB; it was skipped",
            row.bytes
        ),
        Skip::TooManyFields => format!(
            "line {line}: the row has {} fields, the header has {}",
            row.field_count(),
            header.len()
        ),
    };
    let raw = json!({
        "line": line,
        "bytes": row.bytes,
        "start": String::from_utf8_lossy(&row.preview),
    });
    RowOutcome::Bad(RowError::new(line, reason, raw))
}

/// Reads a JSON push of search results: a top-level array of row objects, or an object whose
/// `rows` (or `messages`) field holds that array. Each row's keys name columns as a CSV
/// header does, and `Recipients` may be a comma-separated string or an array of strings.
///
/// Outcomes come in the order of the rows. A bad row's reason starts with its place in the
/// array, counted from 0 (`rows[3]: ...`, or `messages[3]` when the array came in
/// `messages`), and that index is also the outcome's `line`. Only a body of another shape is
/// an error.
pub fn rows_from_json(body: &Value, now: Timestamp) -> Result<Vec<RowOutcome>, ExportError> {
    let (name, rows) = json_rows(body)?;
    let outcomes = rows
        .iter()
        .enumerate()
        .map(|(index, row)| {
            let fields = match row {
                Value::Object(map) => json_row_fields(map),
                other => Err(format!("expected an object, found {}", type_name(other))),
            };
            let location = format!("{name}[{index}]");
            outcome(&location, index as u64, fields, row.clone(), now)
        })
        .collect();
    Ok(outcomes)
}

/// The array of rows in a JSON push, and the name to report its rows under.
fn json_rows(body: &Value) -> Result<(&str, &[Value]), ExportError> {
    let map = match body {
        Value::Array(rows) => return Ok(("rows", rows)),
        Value::Object(map) => map,
        other => {
            return Err(ExportError::JsonShape {
                found: type_name(other).to_owned(),
            });
        }
    };
    let field = map
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case("rows") || key.eq_ignore_ascii_case("messages"));
    match field {
        Some((key, Value::Array(rows))) => Ok((key, rows)),
        Some((key, other)) => Err(ExportError::JsonShape {
            found: format!("`{key}` holding {}", type_name(other)),
        }),
        None if map.is_empty() => Err(ExportError::JsonShape {
            found: "an empty object".to_owned(),
        }),
        None => {
            let keys: Vec<&str> = map.keys().take(20).map(String::as_str).collect();
            Err(ExportError::JsonShape {
                found: format!("an object with the fields {}", keys.join(", ")),
            })
        }
    }
}

fn json_row_fields(row: &Map<String, Value>) -> Result<RowFields, String> {
    if let Some((column, first, second)) = duplicate(row.keys().map(String::as_str)) {
        return Err(format!(
            "the fields {first:?} and {second:?} both name the {} column",
            column.name()
        ));
    }
    let mut fields = RowFields::default();
    for (key, value) in row {
        match Column::from_name(key) {
            None => {}
            Some(Column::Recipients) => fields.recipients = json_recipients(key, value)?,
            Some(column) => {
                if let Some(text) = json_text(key, value)? {
                    fields.set(column, text);
                }
            }
        }
    }
    Ok(fields)
}

fn json_text(key: &str, value: &Value) -> Result<Option<String>, String> {
    match value {
        Value::Null => Ok(None),
        Value::String(text) => Ok(Some(text.clone())),
        Value::Number(number) => Ok(Some(number.to_string())),
        Value::Bool(yes) => Ok(Some(yes.to_string())),
        other => Err(format!(
            "{key}: expected a string, found {}",
            type_name(other)
        )),
    }
}

fn json_recipients(key: &str, value: &Value) -> Result<Option<Vec<String>>, String> {
    match value {
        Value::Null => Ok(None),
        Value::String(text) => Ok(Some(vec![text.clone()])),
        Value::Array(items) => {
            let mut cells = Vec::with_capacity(items.len());
            for (index, item) in items.iter().enumerate() {
                match item {
                    Value::String(text) => cells.push(text.clone()),
                    other => {
                        return Err(format!(
                            "{key}[{index}]: expected a string, found {}",
                            type_name(other)
                        ));
                    }
                }
            }
            Ok(Some(cells))
        }
        other => Err(format!(
            "{key}: expected a string or an array of strings, found {}",
            type_name(other)
        )),
    }
}

/// One row's known columns, read from a CSV line or a JSON object; `None` when the column is
/// absent (or null in JSON).
#[derive(Debug, Default)]
struct RowFields {
    message_id: Option<String>,
    /// Each cell is a list of addresses; CSV gives one cell, a JSON array several.
    recipients: Option<Vec<String>>,
    date: Option<String>,
    sender: Option<String>,
    header_from: Option<String>,
    subject: Option<String>,
    /// What reading the row worked around, such as bytes that were not UTF-8.
    notes: Vec<String>,
}

impl RowFields {
    fn set(&mut self, column: Column, text: String) {
        match column {
            Column::MessageId => self.message_id = Some(text),
            Column::Recipients => self.recipients = Some(vec![text]),
            Column::Date => self.date = Some(text),
            Column::Sender => self.sender = Some(text),
            Column::HeaderFrom => self.header_from = Some(text),
            Column::Subject => self.subject = Some(text),
        }
    }
}

fn outcome(
    location: &str,
    line: u64,
    fields: Result<RowFields, String>,
    raw: Value,
    now: Timestamp,
) -> RowOutcome {
    match fields.and_then(|fields| drafts_for_row(fields, &raw, now)) {
        Ok(drafts) => RowOutcome::Alerts { line, drafts },
        Err(problem) => RowOutcome::Bad(RowError::new(line, format!("{location}: {problem}"), raw)),
    }
}

/// The one mapping from a row to alert drafts, for CSV and JSON alike: a draft per recipient,
/// each keyed `export:<Message-ID>:<recipient>`. The error says what makes the row unusable.
fn drafts_for_row(
    fields: RowFields,
    raw: &Value,
    now: Timestamp,
) -> Result<Vec<AlertDraft>, String> {
    let message_id = row_message_id(fields.message_id.as_deref())?;
    let recipients = row_recipients(fields.recipients.as_deref())?;
    let mut notes = fields.notes;
    let time = row_time(fields.date.as_deref(), now, &mut notes);
    let sender = row_sender(
        fields.sender.as_deref(),
        fields.header_from.as_deref(),
        &mut notes,
    );
    let subject = fields
        .subject
        .map(|subject| subject.trim().to_owned())
        .filter(|subject| !subject.is_empty())
        .map(|subject| {
            if subject.len() > MAX_KEPT_FIELD {
                notes.push(format!("the subject was cut to {MAX_KEPT_FIELD} bytes"));
            }
            cut(&subject, MAX_KEPT_FIELD).to_owned()
        });

    // Each draft carries its own copy of the row, so a row listing thousands of recipients
    // would cost their number squared; past a hundred, a draft's copy lists only its own.
    let one_recipient_each = recipients.len() > FULL_ROW_RECIPIENTS;
    if one_recipient_each {
        notes.push(format!(
            "the row lists {} recipients; this alert's copy of the row lists only its own",
            recipients.len()
        ));
    }
    let drafts = recipients
        .into_iter()
        .map(|recipient| AlertDraft {
            kind: AlertKind::SearchExport,
            dedup_key: format!("export:{}:{recipient}", message_id.as_str()),
            time,
            message_id: Some(message_id.clone()),
            subject: subject.clone(),
            sender: sender.clone(),
            raw: {
                let own = one_recipient_each.then_some(recipient.as_str());
                let (kept, _) = bounded_row(raw, own);
                kept
            },
            recipients: vec![recipient],
            threats: Vec::new(),
            notes: notes.clone(),
            link: None,
            analysis: None,
        })
        .collect();
    Ok(drafts)
}

/// The most bytes of one field a stored row keeps (the recipients field, which holds at most
/// [`FULL_ROW_RECIPIENTS`] addresses, excepted).
const MAX_KEPT_FIELD: usize = 4 << 10;
/// The most bytes of fields one stored row keeps; later columns are left out.
const MAX_KEPT_ROW: usize = 48 << 10;

/// The copy of a row an alert or a rejected event keeps: each field cut to
/// [`MAX_KEPT_FIELD`] bytes, at most [`MAX_KEPT_ROW`] bytes in all, and, given `recipients`,
/// the recipients field holding only those. So a row of a megabyte sent to thousands of
/// mailboxes costs each alert kilobytes, not the row. Returns whether anything was cut, which
/// the row's `_cut` field also says.
fn bounded_row(raw: &Value, recipients: Option<&str>) -> (Value, bool) {
    let Value::Object(row) = raw else {
        return (raw.clone(), false);
    };
    // A row copied for each of many recipients keeps a much smaller copy each.
    let (field_cap, row_cap) = match recipients {
        Some(_) => (MAX_KEPT_FIELD / 16, MAX_KEPT_ROW / 16),
        None => (MAX_KEPT_FIELD, MAX_KEPT_ROW),
    };
    let mut kept = Map::new();
    let (mut total, mut cut_any) = (0usize, false);
    for (key, value) in row {
        let value = match (Column::from_name(key), recipients) {
            (Some(Column::Recipients), Some(own)) => Value::String(own.to_owned()),
            _ => value.clone(),
        };
        let recipients_field = matches!(Column::from_name(key), Some(Column::Recipients));
        let value = match value {
            Value::String(text) if text.len() > field_cap && !recipients_field => {
                cut_any = true;
                Value::String(cut(&text, field_cap).to_owned())
            }
            other => other,
        };
        let size = key.len() + value.to_string().len();
        if total + size > row_cap {
            cut_any = true;
            continue;
        }
        total += size;
        kept.insert(key.clone(), value);
    }
    if cut_any {
        kept.insert("_cut".into(), Value::Bool(true));
    }
    (Value::Object(kept), cut_any)
}

/// The longest prefix of `text` of at most `max` bytes that ends on a character boundary.
fn cut(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

fn row_message_id(text: Option<&str>) -> Result<MessageId, String> {
    let text = text.ok_or_else(|| "Message_ID is missing".to_owned())?;
    if text.trim().is_empty() {
        return Err("Message_ID is empty".to_owned());
    }
    MessageId::parse(text).ok_or_else(|| format!("Message_ID {} holds no id", quoted(text)))
}

/// The row's recipients, split on `,` and `;`, normalised, without repeats.
fn row_recipients(cells: Option<&[String]>) -> Result<Vec<String>, String> {
    let cells = cells.ok_or_else(|| "Recipients is missing".to_owned())?;
    let mut seen = HashSet::new();
    let mut recipients = Vec::new();
    for entry in cells.iter().flat_map(|cell| split_address_list(cell)) {
        let Some(recipient) = address(entry) else {
            return Err(format!(
                "Recipients entry {} is not an e-mail address",
                quoted(entry)
            ));
        };
        if seen.insert(recipient.clone()) {
            recipients.push(recipient);
        }
        if recipients.len() > MAX_ROW_RECIPIENTS {
            return Err(format!(
                "Recipients lists more than {MAX_ROW_RECIPIENTS} addresses; split the row"
            ));
        }
    }
    if recipients.is_empty() {
        return Err("Recipients is empty".to_owned());
    }
    Ok(recipients)
}

/// The Date column, or `now` with a note saying why.
fn row_time(date: Option<&str>, now: Timestamp, notes: &mut Vec<String>) -> Timestamp {
    let Some(date) = date.map(str::trim).filter(|date| !date.is_empty()) else {
        notes.push("no Date in the row; the alert's time is when the export arrived".to_owned());
        return now;
    };
    parse_time(date).unwrap_or_else(|| {
        notes.push(format!(
            "Date {} could not be read; the alert's time is when the export arrived",
            quoted(date)
        ));
        now
    })
}

/// The envelope sender, else the header From. An empty reverse path (`<>`, as bounces have)
/// is passed over quietly; another value that is not an address is noted.
fn row_sender(
    sender: Option<&str>,
    header_from: Option<&str>,
    notes: &mut Vec<String>,
) -> Option<String> {
    for (column, value) in [("Sender", sender), ("Header_From", header_from)] {
        let Some(value) = value.map(str::trim).filter(|value| !value.is_empty()) else {
            continue;
        };
        match address(value) {
            Some(address) => return Some(address),
            None if value == "<>" => {}
            None => notes.push(format!(
                "{column} {} is not an e-mail address",
                quoted(value)
            )),
        }
    }
    None
}

#[cfg(test)]
mod tests;
