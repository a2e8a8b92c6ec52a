//! Positions a read the way dcos-log's sd-journal reader does, with journalctl.
//!
//! With the matching entries `E[0..n)` and a position `p` ("the next entry read is
//! `E[p]`"):
//!
//! - no `cursor`: `p = 0`; a `cursor` naming `E[c]`: `p = c + 1` (the entry itself is
//!   not repeated, so `Last-Event-ID` resumes without duplicates). A cursor that names no
//!   matching entry is a bad parameter (400);
//! - `skip_next=j`: `p = min(p + j, n)`; `skip_prev=k`: `p = max(p - k, 0)`, counted
//!   from the end (`p = n`) when there is no cursor; without a cursor `skip_next` is then
//!   moot, as in dcos-log, which seeks the tail for `skip_prev`;
//! - reading returns `E[p], E[p+1], …` (`limit` of them, if given); `/stream/` then
//!   follows new entries; `read_reverse=true` returns `E[p-1], E[p-2], …` instead,
//!   `p` defaulting to the end.
//!
//! `X-Journal-Skip-Next`/`X-Journal-Skip-Prev` report how far the position actually
//! moved (less than asked at either end of the journal).
//!
//! How: the positioning reads are bounded (`--lines=k`, or `k`/`j` entries of a read
//! that is then killed), so a skip over millions of entries is never buffered; the read
//! that follows is lazy, and `/stream/` chains a `--follow --after-cursor=<last entry>`
//! read once the existing entries are out.

use std::collections::VecDeque;

use crate::journal::{Entry, EntryStream, Journal, JournalError, Read, Start};
use crate::query::{Match, Query};

/// Why a read could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// `cursor` (or `Last-Event-ID`) names no entry that matches the filters.
    #[error("parameter `cursor`: no journal entry matching the filters has cursor {cursor:?}")]
    UnknownCursor {
        /// The cursor.
        cursor: String,
    },
    /// The journal could not be read.
    #[error(transparent)]
    Journal(#[from] JournalError),
}

/// An opened, positioned read.
#[derive(Debug)]
pub struct Reader {
    journal: Journal,
    matches: Vec<Match>,
    reverse: bool,
    /// Entries already read, sent first.
    prelude: VecDeque<Entry>,
    /// The lazy read of the rest.
    current: Option<EntryStream>,
    /// A `--follow` read is still to be chained after `current`.
    follow_pending: bool,
    /// The cursor of the newest entry passed (forward reads), where following resumes.
    last: Option<String>,
    /// Entries still allowed by `limit`.
    remaining: Option<u64>,
    /// How far `skip_next` moved.
    pub skipped_next: u64,
    /// How far `skip_prev` moved.
    pub skipped_prev: u64,
}

async fn take(s: &mut EntryStream, n: u64) -> Result<Vec<Entry>, JournalError> {
    let mut v = Vec::new();
    while u64::try_from(v.len()).unwrap_or(u64::MAX) < n {
        match s.next().await? {
            Some(e) => v.push(e),
            None => break,
        }
    }
    Ok(v)
}

fn len(v: &[Entry]) -> u64 {
    u64::try_from(v.len()).unwrap_or(u64::MAX)
}

impl Reader {
    /// Opens a read for `q`; `follow`: keep reading new entries (`/stream/`).
    pub async fn open(journal: &Journal, q: &Query, follow: bool) -> Result<Reader, OpenError> {
        let mut r = Reader {
            journal: journal.clone(),
            matches: q.matches.clone(),
            reverse: q.read_reverse,
            prelude: VecDeque::new(),
            current: None,
            follow_pending: follow && !q.read_reverse,
            last: None,
            remaining: (q.limit > 0).then_some(q.limit),
            skipped_next: 0,
            skipped_prev: 0,
        };
        let once = |start: Start, reverse: bool| Read {
            start,
            reverse,
            follow: false,
        };
        let m = &q.matches;
        if q.read_reverse {
            let mut s = match &q.cursor {
                None => journal.entries(&once(Start::Head, true), m)?,
                Some(c) => {
                    let mut s = journal.entries(&once(Start::At(c.clone()), true), m)?;
                    check_cursor(&mut s, c).await?;
                    s
                }
            };
            r.skipped_prev = len(&take(&mut s, q.skip_prev).await?);
            r.current = Some(s);
            return Ok(r);
        }
        match &q.cursor {
            None if q.skip_prev == 0 => {
                let mut s = journal.entries(&once(Start::Head, false), m)?;
                let skipped = take(&mut s, q.skip_next).await?;
                r.skipped_next = len(&skipped);
                r.last = skipped.last().map(|e| e.cursor.clone());
                r.current = Some(s);
            }
            None => {
                let mut s = journal.entries(&once(Start::Tail(q.skip_prev), false), m)?;
                let tail = take(&mut s, q.skip_prev).await?;
                r.skipped_prev = len(&tail);
                r.last = tail.last().map(|e| e.cursor.clone());
                r.prelude = tail.into();
            }
            Some(c) => {
                let mut after = journal.entries(&once(Start::After(c.clone()), false), m)?;
                let mut back = journal.entries(&once(Start::At(c.clone()), true), m)?;
                let own = check_cursor(&mut back, c).await?;
                let forward = take(&mut after, q.skip_next).await?;
                r.skipped_next = len(&forward);
                r.last = Some(
                    forward
                        .last()
                        .map_or_else(|| c.clone(), |e| e.cursor.clone()),
                );
                if q.skip_prev <= r.skipped_next {
                    r.skipped_prev = q.skip_prev;
                    let keep = usize::try_from(q.skip_prev).unwrap_or(usize::MAX);
                    let from = forward.len().saturating_sub(keep);
                    r.prelude = forward.into_iter().skip(from).collect();
                } else {
                    // the cursor's own entry (already checked), then older ones
                    let need = q.skip_prev - r.skipped_next;
                    let mut older = take(&mut back, need.saturating_sub(1)).await?;
                    older.insert(0, own);
                    r.skipped_prev = r.skipped_next + len(&older);
                    older.reverse();
                    r.prelude = older.into_iter().chain(forward).collect();
                }
                drop(back);
                r.current = Some(after);
            }
        }
        Ok(r)
    }

    /// Ends the read: the next [`Reader::next`] returns `None` (and the journalctl
    /// child is killed now).
    pub fn stop(&mut self) {
        self.remaining = Some(0);
        self.prelude.clear();
        self.current = None;
        self.follow_pending = false;
    }

    /// The next entry to send; `None`: the read is complete.
    pub async fn next(&mut self) -> Result<Option<Entry>, JournalError> {
        loop {
            if self.remaining == Some(0) {
                return Ok(None);
            }
            let entry = if let Some(e) = self.prelude.pop_front() {
                e
            } else if let Some(s) = &mut self.current {
                match s.next().await? {
                    Some(e) => {
                        if !self.reverse {
                            self.last = Some(e.cursor.clone());
                        }
                        e
                    }
                    None => {
                        self.current = None;
                        continue;
                    }
                }
            } else if self.follow_pending {
                self.follow_pending = false;
                let start = match &self.last {
                    Some(c) => Start::After(c.clone()),
                    None => Start::Head,
                };
                let read = Read {
                    start,
                    reverse: false,
                    follow: true,
                };
                self.current = Some(self.journal.entries(&read, &self.matches)?);
                continue;
            } else {
                return Ok(None);
            };
            if let Some(n) = &mut self.remaining {
                *n -= 1;
            }
            return Ok(Some(entry));
        }
    }
}

/// The first entry of a `--cursor=c` read must be `c`'s own; returns it.
async fn check_cursor(s: &mut EntryStream, c: &str) -> Result<Entry, OpenError> {
    match s.next().await {
        Ok(Some(e)) if e.cursor == c => Ok(e),
        // journalctl refuses a cursor it cannot parse: that is bad input too
        Ok(_) | Err(JournalError::Failed { .. }) => Err(OpenError::UnknownCursor {
            cursor: c.to_owned(),
        }),
        Err(e) => Err(e.into()),
    }
}
