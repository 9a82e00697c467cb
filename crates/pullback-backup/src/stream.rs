//! Moving local file content in large chunks, hashing it on the way: reading, hashing and
//! writing run on three threads so that each overlaps the others, and several files move at
//! once.

use crate::BackupError;
use crate::error::io_error;
use crate::progress::Meter;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, channel, sync_channel};
use std::thread;

/// The size of one chunk of content passed between the stages: large enough that handing
/// chunks over costs nothing, small enough that a chunk stays in the processor's cache.
pub(crate) const CHUNK_BYTES: usize = 1 << 20;

/// The most bytes given to one `write`. Linux sizes the page cache memory it takes for a
/// write by the write's length, and a large piece of contiguous memory can make it stop to
/// compact memory: on a busy machine writes of 2 MiB were measured up to 30 times slower than
/// writes of 1 MiB or less.
const WRITE_PIECE_BYTES: usize = 256 << 10;

/// The chunks in flight for one file: one being read, one being hashed, one being written and
/// one spare.
const BUFFERS: usize = 4;

/// The most files moved at once.
const MAX_WORKERS: usize = 4;

/// The threads syncing copied files to disk while later files are copied. Waiting for the
/// disk takes no processor time.
const SYNCERS: usize = 4;

/// A buffer and how many of its bytes hold content.
type Chunk = (Vec<u8>, usize);

/// A file's content as it went by.
#[derive(Debug)]
pub(crate) struct Streamed {
    /// Bytes read.
    pub(crate) size: u64,
    /// Their SHA-256 in lower-case hexadecimal.
    pub(crate) sha256: String,
}

/// The buffers one worker reuses from file to file.
#[derive(Default)]
pub(crate) struct Buffers(Vec<Vec<u8>>);

impl Buffers {
    fn take(&mut self) -> Vec<u8> {
        self.0.pop().unwrap_or_else(|| vec![0; CHUNK_BYTES])
    }
}

/// Reads `source` to its end, hashing it, and writes it to the new file `dest` when one is
/// given. The copy is not synced to disk: see [`syncing_while`]. `size_hint` is the size the file had when it was
/// listed; small files take a path without threads.
pub(crate) fn stream_file(
    source: &Path,
    dest: Option<&Path>,
    size_hint: u64,
    buffers: &mut Buffers,
    meter: &Meter,
) -> Result<Streamed, BackupError> {
    let mut input = File::open(source).map_err(io_error("opening", source))?;
    let output = match dest {
        Some(dest) => Some((
            File::create_new(dest).map_err(io_error("creating", dest))?,
            dest,
        )),
        None => None,
    };
    if size_hint < CHUNK_BYTES as u64 {
        return stream_small(&mut input, source, output, buffers, meter);
    }

    let (free_tx, free_rx) = sync_channel::<Vec<u8>>(BUFFERS);
    for _ in 0..BUFFERS {
        free_tx
            .send(buffers.take())
            .expect("the pool has room for every buffer");
    }
    let (hash_tx, hash_rx) = sync_channel::<Chunk>(BUFFERS);
    let (digest, written, size) = thread::scope(|scope| {
        let (write_tx, writing) = match output {
            Some((output, dest)) => {
                let (write_tx, write_rx) = sync_channel::<Chunk>(BUFFERS);
                let free = free_tx.clone();
                let writing = scope.spawn(move || write_stage(write_rx, output, dest, free, meter));
                (Some(write_tx), Some(writing))
            }
            None => (None, None),
        };
        let free = write_tx.is_none().then(|| free_tx.clone());
        let hashing = scope.spawn(move || hash_stage(hash_rx, write_tx, free, meter));
        // The stages hold the only senders now, so the reader sees when they have all ended.
        drop(free_tx);
        let size = read_stage(&mut input, source, &free_rx, hash_tx, meter);
        let digest = join(hashing);
        let written = writing.map_or(Ok(()), join);
        (digest, written, size)
    });
    buffers.0.extend(free_rx.try_iter());
    // A write error explains a read that stopped early, so it comes first.
    written?;
    Ok(Streamed {
        size: size?,
        sha256: hex::encode(digest),
    })
}

/// A file of less than one chunk: read, hash and write on this thread.
fn stream_small(
    input: &mut File,
    source: &Path,
    output: Option<(File, &Path)>,
    buffers: &mut Buffers,
    meter: &Meter,
) -> Result<Streamed, BackupError> {
    let mut buf = buffers.take();
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut output = output;
    let result = loop {
        meter.check()?;
        let n = match fill(input, &mut buf) {
            Ok(n) => n,
            Err(e) => break Err(io_error("reading", source)(e)),
        };
        hasher.update(&buf[..n]);
        if let Some((file, path)) = output.as_mut()
            && let Err(e) = write_in_pieces(file, &buf[..n])
        {
            break Err(io_error("writing", *path)(e));
        }
        size += n as u64;
        meter.add(n as u64);
        if n < buf.len() {
            break Ok(());
        }
    };
    buffers.0.push(buf);
    result?;
    Ok(Streamed {
        size,
        sha256: hex::encode(hasher.finalize()),
    })
}

/// Fills chunks from the file until its end; returns the bytes read.
fn read_stage(
    input: &mut File,
    source: &Path,
    free: &Receiver<Vec<u8>>,
    next: SyncSender<Chunk>,
    meter: &Meter,
) -> Result<u64, BackupError> {
    let mut size = 0u64;
    loop {
        meter.check()?;
        // Every other stage ended early: its error says why.
        let Ok(mut buf) = free.recv() else {
            return Ok(size);
        };
        let n = fill(input, &mut buf).map_err(io_error("reading", source))?;
        size += n as u64;
        let last = n < buf.len();
        if next.send((buf, n)).is_err() || last {
            return Ok(size);
        }
    }
}

/// Hashes chunks in order, passing each on to the writer, or back to the reader when there is
/// nothing to write.
fn hash_stage(
    chunks: Receiver<Chunk>,
    writer: Option<SyncSender<Chunk>>,
    free: Option<SyncSender<Vec<u8>>>,
    meter: &Meter,
) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for (buf, n) in chunks {
        hasher.update(&buf[..n]);
        match (&writer, &free) {
            (Some(writer), _) => {
                if writer.send((buf, n)).is_err() {
                    break;
                }
            }
            (None, free) => {
                meter.add(n as u64);
                // The reader may have stopped; the buffer is then simply dropped.
                let _ = free.as_ref().map(|f| f.send(buf));
            }
        }
    }
    hasher.finalize().into()
}

/// Writes chunks in order.
fn write_stage(
    chunks: Receiver<Chunk>,
    mut output: File,
    dest: &Path,
    free: SyncSender<Vec<u8>>,
    meter: &Meter,
) -> Result<(), BackupError> {
    for (buf, n) in chunks {
        write_in_pieces(&mut output, &buf[..n]).map_err(io_error("writing", dest))?;
        meter.add(n as u64);
        let _ = free.send(buf);
    }
    Ok(())
}

/// Writes all of `bytes` in pieces of at most [`WRITE_PIECE_BYTES`].
pub(crate) fn write_in_pieces(output: &mut impl Write, bytes: &[u8]) -> io::Result<()> {
    for piece in bytes.chunks(WRITE_PIECE_BYTES) {
        output.write_all(piece)?;
    }
    Ok(())
}

/// Reads until `buf` is full or the file ends; fewer bytes than `buf` holds means the end.
pub(crate) fn fill(input: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Runs `job` on every item on a few threads, in the order given (put large files first so
/// that the last ones to finish are short). After the first failure no new item starts and
/// the items under way are cancelled. Returns one result per item, `None` for items never
/// started. Cancelling is done through `meter`, so the caller's later steps must not check
/// it.
pub(crate) fn run_parallel<T, R>(
    items: &[T],
    meter: &Meter,
    job: impl Fn(&T, &mut Buffers, &Meter) -> Result<R, BackupError> + Sync,
) -> Vec<Option<Result<R, BackupError>>>
where
    T: Sync,
    R: Send,
{
    // As many files as MAX_WORKERS whatever the processors: a file read from a cold disk
    // leaves its worker waiting, and more reads in flight keep the disk busy.
    let workers = MAX_WORKERS.min(items.len().max(1));
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Result<R, BackupError>>>> =
        Mutex::new(items.iter().map(|_| None).collect());
    thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                let mut buffers = Buffers::default();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= items.len() || meter.check().is_err() {
                        return;
                    }
                    let result = job(&items[i], &mut buffers, meter);
                    if result.is_err() {
                        // The operation has failed: the other workers stop at their next chunk.
                        meter.cancel();
                    }
                    results.lock().expect("no worker panics holding the lock")[i] = Some(result);
                }
            });
        }
    });
    results
        .into_inner()
        .expect("no worker panicked holding the lock")
}

fn join<T>(handle: thread::ScopedJoinHandle<'_, T>) -> T {
    handle
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// Runs `work` with a function that queues a written file to be synced to disk. A few
/// threads sync queued files while the work goes on, so the disk writes out one file while
/// the next is copied. Returns once every queued file is synced: the work's error first, then
/// the first failed sync.
pub(crate) fn syncing_while<T>(
    work: impl FnOnce(&(dyn Fn(PathBuf) + Sync)) -> Result<T, BackupError>,
) -> Result<T, BackupError> {
    let (queue, queued) = channel::<PathBuf>();
    let queued = Mutex::new(queued);
    let failure = Mutex::new(None);
    let result = thread::scope(|scope| {
        for _ in 0..SYNCERS {
            scope.spawn(|| {
                loop {
                    // The lock is held only while waiting, one syncer at a time.
                    let next = queued.lock().expect("no syncer panics").recv();
                    let Ok(path) = next else {
                        return;
                    };
                    // A read-only handle is enough: fsync writes out the file's data
                    // whichever handle asks.
                    if let Err(e) = File::open(&path).and_then(|file| file.sync_all()) {
                        let mut failure = failure.lock().expect("no syncer panics");
                        failure.get_or_insert(io_error("syncing", &path)(e));
                    }
                }
            });
        }
        let sync = move |path: PathBuf| {
            // The syncers only stop once this function is dropped.
            let _ = queue.send(path);
        };
        let result = work(&sync);
        // Ends the queue: the syncers finish what is queued and stop.
        drop(sync);
        result
    })?;
    match failure.into_inner().expect("no syncer panicked") {
        Some(e) => Err(e),
        None => Ok(result),
    }
}
