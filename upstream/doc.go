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
//   - Order: records are published in seq order, asynchronously, with at
//     most Options.Window acknowledgements outstanding; a Sender advances
//     only on acknowledgements. When an acknowledgement fails or times out
//     it waits for every outstanding one, asks the stream which of them it
//     holds (the device's messages after the last known stream sequence,
//     read from the leader) and republishes, in seq order and one at a
//     time, only those it lacks, with their Nats-Msg-Id and on the
//     condition (Nats-Expected-Last-Subject-Sequence on eddy.<device>.>)
//     that the device's last message is still the one it knows: an
//     original stored late, by a new leader after the scan, fails the
//     condition and is found by the next scan. So a republish does not
//     store twice, also when an outage outlasted the duplicate window. A record can
//     land out of order only when the stream lost it while storing a later
//     one (a leader failover between the two): it is then republished
//     after it and counted in Stats.Reordered; consumers that need strict
//     order sort by Eddy-Seq.
//   - Subjects: eddy.<device>.<escaped topic levels> (see EscapeTopic),
//     gaps on eddy.<device>._gap. Headers: Nats-Msg-Id
//     <device>:<epoch>:<seq>, Eddy-Seq, Eddy-Epoch, Eddy-Ts, Eddy-Unit; the
//     body is the record's JSON exactly as on /events (sse.AppendRecordJSON).
//   - The stream is created when missing (subjects eddy.>, file storage,
//     the configured replicas, a duplicate window of at least 2 minutes)
//     and never changed when present; one whose subjects do not cover
//     eddy.> is refused with ErrStreamSubjects.
//   - Memory: a Sender holds at most Options.Window unacknowledged
//     messages; an idle one holds none.
//
// JetStream acknowledges a message when a quorum of replicas has it in
// memory; only a cluster run with sync_interval: always has it on disk by
// then. Run the cluster that way for the guarantee to hold across power
// loss (docs/upstream.md).
package upstream
