package upstream

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// ErrLeaseLost: another collector holds the device's lease now, or ours
// could not be renewed in time.
var ErrLeaseLost = errors.New("upstream: lease lost")

// Leases are per-device leases in a JetStream key-value bucket, so that
// several collectors with one device list publish each device from one of
// them at a time. A lease is the key d.<device> holding the collector's
// id; it is taken with a create (which fails while the key exists),
// renewed with an update checked against the revision we wrote last, and
// expires with the bucket's TTL when its holder stops renewing. Live
// collectors announce themselves under c.<id> the same way, so each can
// take its fair share of the devices.
type Leases struct {
	kv  jetstream.KeyValue
	id  string
	ttl time.Duration
	c   *Conn
}

// OpenLeases opens (creating when missing) the bucket. ttl is used when
// creating it; an existing bucket keeps its own TTL, which Leases adopts.
func OpenLeases(ctx context.Context, c *Conn, bucket, id string, ttl time.Duration) (*Leases, error) {
	if ttl < time.Second {
		return nil, fmt.Errorf("upstream: lease ttl %s: at least 1s", ttl)
	}
	var kv jetstream.KeyValue
	err := c.attempt(ctx, "open lease bucket "+bucket, nil, func(ctx context.Context) error {
		var err error
		kv, err = c.js.KeyValue(ctx, bucket)
		if errors.Is(err, jetstream.ErrBucketNotFound) {
			kv, err = c.js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
				Bucket: bucket, Description: "eddy collect: device leases", History: 1,
				TTL: ttl, Storage: jetstream.FileStorage, Replicas: c.opt.Replicas,
			})
			if errors.Is(err, jetstream.ErrBucketExists) {
				return err // another collector created it: open it on the next attempt
			}
		}
		if err != nil {
			return err
		}
		st, err := kv.Status(ctx)
		if err != nil {
			return err
		}
		if st.TTL() > 0 {
			ttl = st.TTL()
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &Leases{kv: kv, id: id, ttl: ttl, c: c}, nil
}

// TTL is the bucket's TTL: a lease not renewed for that long expires.
func (l *Leases) TTL() time.Duration { return l.ttl }

// ID is this collector's id.
func (l *Leases) ID() string { return l.id }

func (l *Leases) try(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, min(l.c.opt.RequestTimeout, l.ttl/3))
}

// Acquire takes the device's lease when nobody holds it, returning the
// revision to renew it with; ok is false when another collector holds it.
func (l *Leases) Acquire(ctx context.Context, device string) (rev uint64, ok bool, err error) {
	ctx, cancel := l.try(ctx)
	defer cancel()
	rev, err = l.kv.Create(ctx, "d."+device, []byte(l.id))
	if errors.Is(err, jetstream.ErrKeyExists) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("upstream: acquire lease %s: %w", device, err)
	}
	return rev, true, nil
}

// Renew extends the lease written at rev; ErrLeaseLost when it is no
// longer ours.
func (l *Leases) Renew(ctx context.Context, device string, rev uint64) (uint64, error) {
	ctx, cancel := l.try(ctx)
	defer cancel()
	n, err := l.kv.Update(ctx, "d."+device, []byte(l.id), rev)
	if err != nil {
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence {
			return 0, fmt.Errorf("%w: %s", ErrLeaseLost, device)
		}
		return 0, fmt.Errorf("upstream: renew lease %s: %w", device, err)
	}
	return n, nil
}

// Release gives the lease up if it is still the one written at rev.
func (l *Leases) Release(ctx context.Context, device string, rev uint64) error {
	ctx, cancel := l.try(ctx)
	defer cancel()
	return l.kv.Delete(ctx, "d."+device, jetstream.LastRevision(rev))
}

// Announce writes this collector's presence and counts the live
// collectors (those that announced within the TTL), itself included.
func (l *Leases) Announce(ctx context.Context) (int, error) {
	ctx, cancel := l.try(ctx)
	defer cancel()
	if _, err := l.kv.Put(ctx, "c."+l.id, []byte(time.Now().UTC().Format(time.RFC3339))); err != nil {
		return 0, fmt.Errorf("upstream: announce collector: %w", err)
	}
	lister, err := l.kv.ListKeysFiltered(ctx, "c.>")
	if err != nil {
		return 0, fmt.Errorf("upstream: list collectors: %w", err)
	}
	defer lister.Stop()
	n := 0
	for k := range lister.Keys() {
		if strings.HasPrefix(k, "c.") {
			n++
		}
	}
	return max(n, 1), nil
}

// Withdraw removes this collector's presence (on a clean stop).
func (l *Leases) Withdraw(ctx context.Context) {
	ctx, cancel := l.try(ctx)
	defer cancel()
	_ = l.kv.Purge(ctx, "c."+l.id)
}
