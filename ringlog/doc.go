// Package ringlog owns eddy's only store: a bounded, crash-safe log of
// records in a bbolt file (<dir>/ring.db).
//
// Every record eddy ingests is appended here first, and every live stream,
// resume and history query reads from here.
//
// Guarantees:
//
//   - Sequence numbers (event ids) are strictly increasing and never reused,
//     not even after kill -9 or a power cut: ids are handed out only from a
//     range whose upper end is already durable in the file, so numbering after
//     a restart continues above every id ever handed out. A crash leaves a
//     hole in the numbering, never a reuse.
//   - Append returns at once. The record is visible to readers (ReadAfter,
//     History, Latest) and to Notify waiters immediately, before it is
//     durable. A single writer goroutine group-commits everything appended
//     every Options.SyncInterval (sooner when a batch grows large), so a crash
//     loses at most that window and never corrupts the file (bbolt commits are
//     atomic).
//   - The log is bounded by Options.MaxBytes and Options.MaxAge: the oldest
//     records are deleted in the same transactions as the appends. Sizes are
//     kept as counters, never counted by walking the tree, and freed pages are
//     reused, so under endless churn the file settles near the bound.
//   - Readers never hold a bbolt read transaction for more than one chunk of
//     records, so they never pin pages or block the writer for long.
//   - A failing disk (full, read-only) makes Append return an error wrapping
//     ErrNotDurable while live readers still see every record; the writer
//     keeps the pending records (up to Options.MaxPendingBytes) and retries,
//     trimming harder to make room. A ring.db that cannot be opened or read is
//     moved aside to ring.db.corrupt-<time> and a fresh log is started; it is
//     never silently overwritten.
package ringlog
