// Package upstream owns eddy's way into NATS JetStream: the one publisher
// that both modes share, device push (eddy run forwarding its own ring
// log) and pull (eddy collect following devices' /events), and the lease
// that lets several collectors share one device list.
//
// Guarantees:
//
//   - Exactly once, per device and epoch: a record (device, epoch, seq) is
//     stored in the stream at most once and, as long as the device still
//     holds it when it is its turn, at least once. There is no local
//     cursor: before publishing, and after every reconnect, a Sender reads
//     the device's last message in the stream (the last message on
//     eddy.<device>.>, read from the stream leader through the
//     STREAM.MSG.GET API, never a replica) and continues after its
//     Eddy-Seq when its Eddy-Epoch is the source's epoch, from the start
//     of the source's log otherwise.
//   - Order: every record of a device and epoch is stored in seq order.
//     A Sender has at most one publish unit of its device in flight (a
//     single message, or an atomic batch that the stream stores whole or
//     not at all), conditional on the device's last stored message
//     (Nats-Expected-Last-Subject-Sequence on eddy.<device>.>). A unit
//     lost in a leader failover leaves no hole that a later one fills; a
//     unit stored late (by a new leader, or arriving late from a dead
//     publisher) finds the condition failed instead of storing twice,
//     also past the duplicate window. On any failure a Sender reads the
//     device's last message back from the leader and continues after it.
//     Nats-Msg-Id is kept as defence in depth. See Sender.
//   - Atomic batches need a stream with AllowAtomicPublish (eddy creates
//     its stream so). An existing stream without it is neither changed
//     nor refused: Senders publish one message per unit, with the same
//     guarantees, and eddy warns once with the command that allows them
//     (nats stream edit <stream> --allow-batch).
//   - Subjects: eddy.<device>.<escaped topic levels> (see EscapeTopic),
//     gaps on eddy.<device>._gap. Headers: Nats-Msg-Id
//     <device>:<epoch>:<seq>, Eddy-Seq, Eddy-Epoch, Eddy-Ts, Eddy-Unit; the
//     body is the record's JSON exactly as on /events (sse.AppendRecordJSON).
//   - The stream is created when missing (subjects eddy.>, file storage,
//     the configured replicas, a duplicate window of at least 2 minutes)
//     and never changed when present; one whose subjects do not cover
//     eddy.> is refused with ErrStreamSubjects.
//   - Memory: a Sender holds at most Options.Window messages not known
//     stored; an idle one holds none.
//
// JetStream acknowledges a message when a quorum of replicas has it in
// memory; only a cluster run with sync_interval: always has it on disk by
// then. Run the cluster that way for the guarantee to hold across power
// loss (docs/upstream.md).
package upstream
