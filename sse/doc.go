// Package sse owns eddy's live stream, GET /events: encoding ring-log
// records as Server-Sent Events, the hub that fans every appended record
// out to the streams that follow its topic, per-client backpressure, resume
// by Last-Event-ID, and the HTTP handler that writes the streams.
//
// Guarantees:
//
//   - Framing: every event follows the WHATWG Server-Sent Events format.
//     Data is one JSON line; nothing in a topic, unit or payload can end an
//     event or start a field (JSON strings escape CR and LF, raw JSON
//     payloads are re-validated and compacted, other bytes go base64).
//   - Ids on one stream are strictly increasing, in every mode. Gap events
//     carry no id, so they never move a client's Last-Event-ID.
//   - Resume: a stream with Last-Event-ID N gets every record after N that
//     its filters match, from the ring log, then continues live with no gap
//     and no duplicate at the seam. Records the log no longer holds are
//     announced by one gap event.
//   - Isolation: the hub never blocks on a client. Each stream queues at
//     most Options.ClientBuffer events (plus the batch its writer is
//     currently writing); events are encoded once and shared by all
//     streams, so a queue holds references, not copies, each keeping at
//     most its 4 KiB chunk of encoded frames alive. A full queue
//     collapses to the latest value per topic (mode=downsample, with a gap
//     event), or detaches the stream to read the ring log at its own pace
//     (mode=exact). A rate-capped stream (?rate=HZ) keeps one pending
//     event per topic, in seq order, bounded the same way.
//   - Stalled clients: writes run under a deadline between 3/4 and 1x
//     Options.WriteTimeout, so a client that accepts nothing for that long
//     is dropped and its goroutine and memory released. The deadline is
//     lifted while a stream is quiet, so heartbeats can be rarer than it.
//   - Shutdown: Hub.Shutdown (or the end of Hub.Run) ends every stream with
//     a jittered retry hint (1x to 3x Options.Retry), so a fleet of
//     dashboards does not reconnect in one burst. A stream blocked in a
//     write to a stalled client ends when its deadline passes; bound
//     Shutdown with its context and then close the HTTP servers.
//
// Writing: the live events of all the streams of one HTTP/2 or HTTP/3
// connection are written by one goroutine (connWriter), one Write and one
// flush per stream per wake-up; a stream's own handler goroutine writes
// everything else (catching up from the log, heartbeats, shutdown) and all
// of an HTTP/1.1 or rate-capped stream. An HTTP/3 stream is written to its
// QUIC stream directly and queued whole (quicDst), at most 16 KiB ahead of
// QUIC's packets. Events are encoded once per record by the hub (no
// reflection, no per-stream copy).
//
// Metrics are plain atomic counters (Metrics), exported by the server.
//
// The hub reads the log through ringlog.Notify and ringlog.ReadAfter only;
// it keeps no copy of the log beyond the events still queued for clients.
package sse
