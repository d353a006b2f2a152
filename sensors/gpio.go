package sensors

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eddy-iot/eddy/config"
	"periph.io/x/conn/v3/gpio"
)

// GPIO reads digital inputs through periph.io: each pin's level (0 or 1)
// as <name>/level and, unless its edge is "none", the number of edges seen
// since the sensor opened the pin as <name>/edges (switches, pulse meters).
//
// Edges are counted by one goroutine per pin, started on the first Read
// and ended by Close: it blocks in WaitForEdge where the pin supports edge
// detection, and otherwise samples the level every PollPeriod and counts the
// changes (pulses shorter than that are missed).
type GPIO struct {
	cfgs   []config.GPIOPin
	lookup func(string) (gpio.PinIO, error)
	now    func() time.Time

	mu     sync.Mutex // protects inputs and stop
	inputs []*gpioInput
	stop   chan struct{} // closed by Close; nil until the pins are open
	wg     sync.WaitGroup
}

// PollPeriod is how often a pin without edge detection is sampled.
const PollPeriod = 10 * time.Millisecond

// edgeWait bounds each WaitForEdge so the counting goroutine sees Close.
const edgeWait = 200 * time.Millisecond

type gpioInput struct {
	cfg    config.GPIOPin
	pin    gpio.PinIO
	polled bool          // no edge detection: the level is sampled
	opened gpio.Level    // level when opened, the poller's first reference
	edges  atomic.Uint64 // counted since open
}

// NewGPIO reads the given pins, looked up through env.GPIOPin on the first
// Read.
func NewGPIO(pins []config.GPIOPin, env *Env) (*GPIO, error) {
	if len(pins) == 0 {
		return nil, fmt.Errorf("%w: gpio: no pin", ErrConfig)
	}
	cfgs := make([]config.GPIOPin, len(pins))
	for i, p := range pins {
		if _, err := gpioPull(p.Pull); err != nil {
			return nil, err
		}
		if _, err := gpioEdge(p.Edge); err != nil {
			return nil, err
		}
		p.Name = orDefault(p.Name, p.Pin)
		p.Edge = orDefault(p.Edge, "both")
		cfgs[i] = p
	}
	e := env.withDefaults()
	return &GPIO{cfgs: cfgs, lookup: e.GPIOPin, now: e.Now}, nil
}

var _ Sensor = (*GPIO)(nil)

// Read implements Sensor.
func (g *GPIO) Read(ctx context.Context) ([]Reading, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if err := g.openLocked(); err != nil {
		return nil, err
	}
	now := g.now()
	out := make([]Reading, 0, 2*len(g.inputs))
	for _, in := range g.inputs {
		lv := 0.0
		if in.pin.Read() == gpio.High {
			lv = 1
		}
		out = append(out, Reading{Quantity: in.cfg.Name + "/level", Value: lv, Time: now})
		if in.cfg.Edge != "none" {
			out = append(out, Reading{Quantity: in.cfg.Name + "/edges", Value: float64(in.edges.Load()), Time: now})
		}
	}
	return out, nil
}

// openLocked looks up and configures every pin, then starts the counters.
// Either all pins open or none does.
func (g *GPIO) openLocked() error {
	if g.stop != nil {
		return nil
	}
	var inputs []*gpioInput
	for _, c := range g.cfgs {
		in, err := g.openPin(c)
		if err != nil {
			for _, in := range inputs {
				in.pin.Halt()
			}
			return err
		}
		inputs = append(inputs, in)
	}
	stop := make(chan struct{})
	g.inputs, g.stop = inputs, stop
	for _, in := range inputs {
		if in.cfg.Edge == "none" {
			continue
		}
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			in.count(stop)
		}()
	}
	return nil
}

func (g *GPIO) openPin(c config.GPIOPin) (*gpioInput, error) {
	p, err := g.lookup(c.Pin)
	if err != nil {
		return nil, fmt.Errorf("%w: gpio %s: %w", ErrNoDevice, c.Pin, err)
	}
	if p == nil {
		return nil, fmt.Errorf("%w: gpio: no pin %q", ErrNoDevice, c.Pin)
	}
	pull, _ := gpioPull(c.Pull)
	edge, _ := gpioEdge(c.Edge)
	in := &gpioInput{cfg: c, pin: p}
	if err := p.In(pull, edge); err != nil {
		if edge == gpio.NoEdge {
			return nil, fmt.Errorf("sensors: gpio %s: input: %w", c.Pin, err)
		}
		// No edge detection here (no interrupt line, or a fake pin):
		// sample the level instead.
		if err2 := p.In(pull, gpio.NoEdge); err2 != nil {
			return nil, fmt.Errorf("sensors: gpio %s: input: %w", c.Pin, errors.Join(err, err2))
		}
		in.polled = true
		in.opened = p.Read()
	}
	return in, nil
}

// count runs until stop is closed.
func (in *gpioInput) count(stop <-chan struct{}) {
	if in.polled {
		in.poll(stop)
		return
	}
	for {
		select {
		case <-stop:
			return
		default:
		}
		if in.pin.WaitForEdge(edgeWait) {
			in.edges.Add(1)
		}
	}
}

func (in *gpioInput) poll(stop <-chan struct{}) {
	t := time.NewTicker(PollPeriod)
	defer t.Stop()
	last := in.opened
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		l := in.pin.Read()
		if l == last {
			continue
		}
		rising := l == gpio.High
		if in.cfg.Edge == "both" || rising == (in.cfg.Edge == "rising") {
			in.edges.Add(1)
		}
		last = l
	}
}

// Close implements Sensor: it ends the counting goroutines and halts the
// pins.
func (g *GPIO) Close() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.stop == nil {
		return nil
	}
	close(g.stop)
	g.wg.Wait()
	var errs []error
	for _, in := range g.inputs {
		if err := in.pin.Halt(); err != nil {
			errs = append(errs, fmt.Errorf("sensors: gpio %s halt: %w", in.cfg.Pin, err))
		}
	}
	g.inputs, g.stop = nil, nil
	return errors.Join(errs...)
}

func gpioPull(s string) (gpio.Pull, error) {
	switch s {
	case "":
		return gpio.PullNoChange, nil
	case "up":
		return gpio.PullUp, nil
	case "down":
		return gpio.PullDown, nil
	case "none":
		return gpio.Float, nil
	}
	return 0, fmt.Errorf("%w: gpio: pull %q", ErrConfig, s)
}

func gpioEdge(s string) (gpio.Edge, error) {
	switch s {
	case "", "both":
		return gpio.BothEdges, nil
	case "rising":
		return gpio.RisingEdge, nil
	case "falling":
		return gpio.FallingEdge, nil
	case "none":
		return gpio.NoEdge, nil
	}
	return 0, fmt.Errorf("%w: gpio: edge %q", ErrConfig, s)
}
