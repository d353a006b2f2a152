package config

import (
	"fmt"
	"net/url"
)

// MQTT is one [[mqtt]] block: one client connection to one broker.
type MQTT struct {
	Broker    string   `toml:"broker"` // tcp://, ssl://, ws://, wss://
	Topics    []string `toml:"topics"`
	QoS       int      `toml:"qos"`
	ClientID  string   `toml:"client_id"`
	Username  string   `toml:"username"`
	Password  string   `toml:"password"`
	CAFile    string   `toml:"ca_file"`
	CertFile  string   `toml:"cert_file"`
	KeyFile   string   `toml:"key_file"`
	Keepalive Duration `toml:"keepalive"`
}

func (m *MQTT) validate(key string) error {
	u, err := url.Parse(m.Broker)
	if err != nil || u.Host == "" {
		return &Error{Key: key + ".broker", Msg: fmt.Sprintf("want a broker URL like tcp://host:1883, got %q", m.Broker)}
	}
	switch u.Scheme {
	case "tcp", "mqtt", "ssl", "tls", "mqtts", "ws", "wss":
	default:
		return &Error{Key: key + ".broker", Msg: fmt.Sprintf("scheme %q is not one of tcp, ssl, ws, wss", u.Scheme)}
	}
	if len(m.Topics) == 0 {
		return &Error{Key: key + ".topics", Msg: "at least one topic filter is needed"}
	}
	if m.QoS < 0 || m.QoS > 2 {
		return &Error{Key: key + ".qos", Msg: fmt.Sprintf("%d is not 0, 1 or 2", m.QoS)}
	}
	return nil
}
