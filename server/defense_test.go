package server

import (
	"testing"
	"time"
)

func TestTokenBucket(t *testing.T) {
	b := newTokenBucket(3, 1)
	now := time.Unix(1000, 0)
	for i := range 3 {
		if !b.take(now) {
			t.Fatalf("take %d of the burst refused", i)
		}
	}
	if b.take(now) {
		t.Fatal("take beyond the burst allowed")
	}
	if !b.take(now.Add(time.Second)) {
		t.Fatal("take after a second's refill refused")
	}
}

// h2Guard follows frame headers split across reads and skips payloads.
func TestH2GuardScan(t *testing.T) {
	g := &h2Guard{preface: len(clientPreface),
		resets: newTokenBucket(2, 0), streams: newTokenBucket(100, 0), control: newTokenBucket(100, 0)}
	frame := func(typ, flags byte, payload int) []byte {
		return append([]byte{byte(payload >> 16), byte(payload >> 8), byte(payload), typ, flags, 0, 0, 0, 1}, make([]byte, payload)...)
	}
	var in []byte
	in = append(in, clientPreface...)
	in = append(in, frame(frameSettings, 0, 12)...)
	in = append(in, frame(frameHeaders, 0, 100)...) // no END_HEADERS
	for range h2MaxContinuations - 1 {              // and the last one ends the block
		in = append(in, frame(frameContinuation, 0, 0)...)
	}
	in = append(in, frame(frameContinuation, flagEndHeaders, 5)...)
	in = append(in, frame(frameRSTStream, 0, 4)...)
	in = append(in, frame(frameRSTStream, 0, 4)...)
	for i := 0; i < len(in); i += 7 { // in pieces, as reads come
		if why, bad := g.scan(in[i:min(i+7, len(in))]); bad {
			t.Fatalf("legitimate frames refused: %v", why)
		}
	}
	if why, bad := g.scan(frame(frameRSTStream, 0, 4)); !bad || why != RefusedH2RapidReset {
		t.Errorf("third RST_STREAM over a burst of 2: %v %v, want h2_rapid_reset", why, bad)
	}
	g2 := &h2Guard{streams: newTokenBucket(100, 0)}
	g2.scan(frame(frameHeaders, 0, 10))
	var bad bool
	var why Refusal
	for range h2MaxContinuations + 1 {
		why, bad = g2.scan(frame(frameContinuation, 0, 0))
	}
	if !bad || why != RefusedH2Continuation {
		t.Errorf("%d CONTINUATION frames: %v %v, want h2_continuation", h2MaxContinuations+1, why, bad)
	}
}

// h2Guard's verdict does not depend on how reads split the stream, and no
// input makes it panic.
func FuzzH2GuardScan(f *testing.F) {
	f.Add([]byte(clientPreface+"\x00\x00\x00\x04\x00\x00\x00\x00\x00"), uint8(3))
	f.Add([]byte(clientPreface+"\x00\x00\x01\x01\x00\x00\x00\x00\x01x\x00\x00\x00\x09\x00\x00\x00\x00\x01"), uint8(1))
	f.Fuzz(func(t *testing.T, data []byte, step uint8) {
		mk := func() *h2Guard {
			return &h2Guard{preface: len(clientPreface), resets: newTokenBucket(2, 0),
				streams: newTokenBucket(2, 0), control: newTokenBucket(2, 0)}
		}
		whole, piecewise := mk(), mk()
		w1, b1 := whole.scan(data)
		n := int(step%16) + 1
		var w2 Refusal
		var b2 bool
		for i := 0; i < len(data) && !b2; i += n {
			w2, b2 = piecewise.scan(data[i:min(i+n, len(data))])
		}
		if b1 != b2 || w1 != w2 {
			t.Fatalf("whole: %v %v; in steps of %d: %v %v", w1, b1, n, w2, b2)
		}
	})
}
