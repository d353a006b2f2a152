package ringlog

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The id floor keeps event ids unique when ring.db itself is lost: every
// reservation is also written to a sidecar file beside it, so a fresh
// ring.db numbers above every id the old one could have issued.
//
// Where the floor comes from, strongest first: the sidecar (<dir>/ring.ids,
// written before each reservation is used); the meta of a ring.db that was
// moved aside as corrupt, when it can still be read; and, only when a
// previous ring.db existed but neither can be read, a floor derived from
// the clock (clockFloor).

// idsFile is the sidecar's name beside ring.db.
const idsFile = "ring.ids"

// clockRate bounds the ids a log can issue per second; the clock floor
// assumes no log ever issued faster. 2^23 (8.4 million a second) is several
// times what the writer sustains, and keeps clock-derived ids below 2^53
// (exact in JavaScript numbers) until the 2050s.
const clockRate = 1 << 23

// clockEpoch is where the clock floor starts counting.
var clockEpoch = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)

// clockFloor is an id above every id a log could have issued by now, if it
// numbered from 1 (or from an earlier clock floor) no faster than
// clockRate. It is only as good as the clock: a device that boots with its
// clock in the past gets a low floor.
func clockFloor(now time.Time) uint64 {
	s := now.Sub(clockEpoch).Seconds()
	if s <= 0 {
		return 0
	}
	return uint64(s) * clockRate
}

// readIDs reads the sidecar's reservation; ok is false when there is none.
func readIDs(dir string) (reserved uint64, ok bool, err error) {
	b, err := os.ReadFile(filepath.Join(dir, idsFile))
	if errors.Is(err, os.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("ringlog: read %s: %w", idsFile, err)
	}
	f := strings.Fields(string(b))
	if len(f) != 2 || f[0] != "reserved" {
		return 0, false, fmt.Errorf("ringlog: %s: malformed %q", idsFile, b)
	}
	n, err := strconv.ParseUint(f[1], 10, 64)
	if err != nil {
		return 0, false, fmt.Errorf("ringlog: %s: %w", idsFile, err)
	}
	return n, true, nil
}

// writeIDs durably replaces the sidecar with reserved: write a temporary
// file, sync it, rename it over the old one and sync the directory.
func writeIDs(dir string, reserved uint64) error {
	tmp := filepath.Join(dir, idsFile+".tmp")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("ringlog: write %s: %w", idsFile, err)
	}
	_, err = fmt.Fprintf(f, "reserved %d\n", reserved)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, idsFile))
	}
	if err == nil {
		err = syncDir(dir)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("ringlog: write %s: %w", idsFile, err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// readMovedMeta reads the highest id a moved-aside ring.db reserved or
// stored, if bbolt can still read that much of it.
func readMovedMeta(path string) (n uint64, err error) {
	defer func() {
		if p := recover(); p != nil { // bbolt panics on some corrupt pages
			n, err = 0, fmt.Errorf("ringlog: read %s: %v", path, p)
		}
	}()
	db, err := bolt.Open(path, 0o400, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return 0, err
	}
	defer db.Close()
	err = db.View(func(tx *bolt.Tx) error {
		if meta := tx.Bucket(bucketMeta); meta != nil {
			n = max(uint64(getInt(meta, keyReserved)), uint64(getInt(meta, keyLast)))
		}
		if recs := tx.Bucket(bucketRecords); recs != nil {
			if k, _ := recs.Cursor().Last(); len(k) == 8 {
				n = max(n, keySeq(k))
			}
		}
		return nil
	})
	return n, err
}

// newEpoch returns a random id for a new ring.db's numbering.
func newEpoch() string {
	var b [8]byte
	rand.Read(b[:]) // never fails (crypto/rand panics instead)
	return hex.EncodeToString(b[:])
}
