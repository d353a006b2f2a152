package main

import (
	"context"
	"fmt"
	"strconv"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// publisher publishes QoS 1 messages whose payload is their send time in
// unix nanoseconds (a JSON number, so eddy stores it as the value).
type publisher struct {
	c paho.Client
}

// mqttTimeout bounds every wait on the broker.
const mqttTimeout = 30 * time.Second

// window is how many QoS 1 publishes may await their PUBACK.
const window = 256

func newPublisher(broker, id string) (*publisher, error) {
	o := paho.NewClientOptions().AddBroker(broker).SetClientID(id).SetCleanSession(true).
		SetAutoReconnect(false).SetConnectTimeout(10 * time.Second)
	c := paho.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(mqttTimeout) || tok.Error() != nil {
		return nil, fmt.Errorf("load: publisher connect to %s: %v", broker, tok.Error())
	}
	return &publisher{c: c}, nil
}

func (p *publisher) close() { p.c.Disconnect(250) }

// publishSpec says what to publish.
type publishSpec struct {
	prefix string // topics are prefix + "0" .. prefix + (topics-1), in turn
	topics int
	rate   int // messages per second; 0: as fast as the broker acknowledges
	n      int // messages; 0: until ctx ends
}

// run publishes per spec and returns how many it sent and when the first
// went out. It keeps at most `window` messages unacknowledged.
func (p *publisher) run(ctx context.Context, spec publishSpec) (sent int, first time.Time, err error) {
	names := make([]string, spec.topics)
	for i := range names {
		names[i] = spec.prefix + strconv.Itoa(i)
	}
	pending := make([]paho.Token, 0, window)
	first = time.Now()
	for i := 0; spec.n == 0 || i < spec.n; i++ {
		if ctx.Err() != nil {
			break
		}
		if spec.rate > 0 {
			due := first.Add(time.Duration(i) * time.Second / time.Duration(spec.rate))
			if d := time.Until(due); d > 0 {
				if sleepCtx(ctx, d) != nil {
					break
				}
			}
		}
		if len(pending) == window {
			if err := waitToken(pending[0]); err != nil {
				return sent, first, err
			}
			pending = append(pending[:0], pending[1:]...)
		}
		payload := strconv.AppendInt(make([]byte, 0, 20), time.Now().UnixNano(), 10)
		pending = append(pending, p.c.Publish(names[i%len(names)], 1, false, payload))
		sent++
	}
	for _, tok := range pending {
		if err := waitToken(tok); err != nil {
			return sent, first, err
		}
	}
	return sent, first, nil
}

func waitToken(tok paho.Token) error {
	if !tok.WaitTimeout(mqttTimeout) {
		return fmt.Errorf("load: publish: no PUBACK within %s", mqttTimeout)
	}
	if err := tok.Error(); err != nil {
		return fmt.Errorf("load: publish: %w", err)
	}
	return nil
}
