// Package ingest owns everything that brings readings into the ring log:
// MQTT subscriptions (one paho client per [[mqtt]] block, mqtt*.go) and
// local sensor polling (one loop per [[sensor]] block, sensor*.go).
//
// MQTT guarantees:
//
//   - A QoS 1/2 message is acknowledged to the broker only after every
//     record made from it is durable in the ring log, and acknowledgements
//     go out in the order messages arrived. A crash, a power cut or a disk
//     that fails before that point leaves the message with the broker, which
//     delivers it again (duplicates are possible, loss is not).
//   - The session is persistent (clean session off, stable client id): QoS
//     1/2 messages published while eddy was away arrive when it reconnects,
//     even before the subscriptions are renewed. Reconnects back off
//     exponentially with jitter up to mqtt.reconnect_max, and every
//     connection renews the subscriptions, in case the broker lost them.
//   - A retained message that a broker sends again unchanged because eddy
//     subscribed again (every reconnect does) is not stored twice. Messages
//     that match no configured topic (a subscription an earlier
//     configuration left in the persistent session) are dropped.
//   - Payloads are stored as DESIGN.md says: JSON (one line), else UTF-8
//     text, else binary. A mapping may split JSON objects into one series
//     per field, with units.
//   - What waits between broker and log is bounded: a QoS 1/2 message
//     takes a place in the ack queue (16 MiB of max_payload messages, at
//     least 20) before it is stored, and keeps it until it is durable and
//     acknowledged. A message that finds the queue full for 200 ms (the
//     disk is far behind) is neither stored nor acknowledged; once the
//     queue has drained the session is ended and the broker delivers it
//     again. QoS 0 messages take no place: they are stored as they come.
//   - Bad input never crashes ingest or grows memory without bound:
//     payloads over mqtt.max_payload, topics that are not valid UTF-8 names,
//     and new topics beyond mqtt.max_topics are counted (MQTTStats), logged
//     at most once per reason every 10 s, and acknowledged so that the broker
//     does not redeliver them forever.
//
// Sensor polling guarantees that a missing or failing device is reported
// and retried with backoff, and never stops other sensors or the daemon.
package ingest
