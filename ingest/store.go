package ingest

import (
	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"
)

// inboundDropStore is paho's store without the received QoS 1 messages.
// paho keeps each of them until its PUBACK is sent, and on reconnect
// deletes them unread (the broker of a persistent session delivers them
// again); under a burst that eddy cannot make durable fast enough, those
// copies pinned over 100 MB. Outgoing messages and QoS 2 state are kept
// as paho keeps them.
type inboundDropStore struct{ paho.Store }

func (s inboundDropStore) Put(key string, m packets.ControlPacket) {
	if p, ok := m.(*packets.PublishPacket); ok && p.Qos == 1 && len(key) > 2 && key[:2] == "i." {
		return
	}
	s.Store.Put(key, m)
}
