package main

import (
	"time"

	"github.com/eddy-iot/eddy/server"
	"github.com/eddy-iot/eddy/sse"
)

// mqttStatus is one broker in /api/status's "mqtt" section.
type mqttStatus struct {
	Broker          string `json:"broker"`
	ClientID        string `json:"client_id"`
	Connected       bool   `json:"connected"`
	Received        uint64 `json:"received"`
	Stored          uint64 `json:"stored"`
	ConnectionsLost uint64 `json:"connections_lost"`
	ConnectErrors   uint64 `json:"connect_errors"`
	Topics          int    `json:"topics"`
}

// sensorStatus is one sensor in /api/status's "sensors" section.
type sensorStatus struct {
	Name          string     `json:"name"`
	Kind          string     `json:"kind"`
	Up            bool       `json:"up"`
	Reads         uint64     `json:"reads"`
	Errors        uint64     `json:"errors"`
	LastError     string     `json:"last_error,omitempty"`
	LastErrorTime *time.Time `json:"last_error_time,omitempty"`
	LastOK        *time.Time `json:"last_ok,omitempty"`
}

// addStatus plugs the parts the server does not know into /api/status:
// open streams by protocol, MQTT brokers and sensors.
func addStatus(srv *server.Server, hub *sse.Metrics, g *ingestGroup) {
	srv.AddStatus("streams", func() any {
		out := map[string]int64{}
		for p, name := range sse.StreamProtos {
			for m := range sse.StreamModes {
				out[name] += hub.Streams[p][m].Load()
			}
		}
		return out
	})
	srv.AddStatus("mqtt", func() any {
		_, ms := g.snapshot()
		out := []mqttStatus{}
		for _, m := range ms {
			st := m.Stats()
			out = append(out, mqttStatus{Broker: st.Broker, ClientID: st.ClientID, Connected: st.Connected,
				Received: st.Received, Stored: st.Stored, ConnectionsLost: st.ConnectionsLost,
				ConnectErrors: st.ConnectErrors, Topics: st.Topics})
		}
		return out
	})
	srv.AddStatus("sensors", func() any {
		s, _ := g.snapshot()
		out := []sensorStatus{}
		if s == nil {
			return out
		}
		for _, h := range s.Health() {
			st := sensorStatus{Name: h.Name, Kind: h.Kind, Up: h.Up, Reads: h.Reads, Errors: h.Errors, LastError: h.LastError}
			if !h.LastErrorTime.IsZero() {
				st.LastErrorTime = &h.LastErrorTime
			}
			if !h.LastOK.IsZero() {
				st.LastOK = &h.LastOK
			}
			out = append(out, st)
		}
		return out
	})
}
