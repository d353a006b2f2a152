package ringlog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"
)

// Kind says how a record's Value is to be read.
type Kind uint8

const (
	// KindJSON: Value is one valid JSON text (a number, string, object, ...).
	KindJSON Kind = 1
	// KindText: Value is UTF-8 text that is not JSON.
	KindText Kind = 2
	// KindBinary: Value is arbitrary bytes.
	KindBinary Kind = 3
)

func (k Kind) String() string {
	switch k {
	case KindJSON:
		return "json"
	case KindText:
		return "text"
	case KindBinary:
		return "binary"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Record is one observation. Seq is assigned by Append.
type Record struct {
	Seq   uint64
	Time  time.Time // when the value was observed
	Topic string
	Kind  Kind
	Value []byte
	Unit  string
}

// formatVersion is the first byte of every encoded record. A log whose meta
// says another version is refused at Open with ErrFormat.
const formatVersion = 1

// MaxTopicLen and MaxUnitLen bound the strings of a record; MaxValueLen its value.
const (
	MaxTopicLen = 1024
	MaxUnitLen  = 64
	MaxValueLen = 1 << 20
)

// ErrCorruptRecord is returned by decodeRecord for bytes that are not a record.
var ErrCorruptRecord = errors.New("ringlog: corrupt record")

// encodedLen is the size of the value encodeRecord writes for r.
func encodedLen(r *Record) int {
	return 2 + 8 + uvarintLen(uint64(len(r.Topic))) + len(r.Topic) +
		uvarintLen(uint64(len(r.Unit))) + len(r.Unit) + len(r.Value)
}

// appendRecord encodes r (without its seq, which is the key):
//
//	version(1) kind(1) unixnano(8, big-endian) uvarint(len topic) topic
//	uvarint(len unit) unit value...
func appendRecord(dst []byte, r *Record) []byte {
	dst = append(dst, formatVersion, byte(r.Kind))
	dst = binary.BigEndian.AppendUint64(dst, uint64(r.Time.UnixNano()))
	dst = binary.AppendUvarint(dst, uint64(len(r.Topic)))
	dst = append(dst, r.Topic...)
	dst = binary.AppendUvarint(dst, uint64(len(r.Unit)))
	dst = append(dst, r.Unit...)
	return append(dst, r.Value...)
}

// recordView is a decoded record whose byte fields alias the input.
type recordView struct {
	kind  Kind
	nanos int64
	topic []byte
	unit  []byte
	value []byte
}

func decodeView(b []byte) (recordView, error) {
	var v recordView
	if len(b) < 10 {
		return v, fmt.Errorf("%w: %d bytes", ErrCorruptRecord, len(b))
	}
	if b[0] != formatVersion {
		return v, fmt.Errorf("%w: format version %d", ErrCorruptRecord, b[0])
	}
	v.kind = Kind(b[1])
	if v.kind < KindJSON || v.kind > KindBinary {
		return v, fmt.Errorf("%w: kind %d", ErrCorruptRecord, b[1])
	}
	v.nanos = int64(binary.BigEndian.Uint64(b[2:10]))
	rest := b[10:]
	var err error
	if v.topic, rest, err = lenPrefixed(rest, MaxTopicLen); err != nil {
		return v, err
	}
	if v.unit, rest, err = lenPrefixed(rest, MaxUnitLen); err != nil {
		return v, err
	}
	if !utf8.Valid(v.topic) || !utf8.Valid(v.unit) {
		return v, fmt.Errorf("%w: topic or unit is not UTF-8", ErrCorruptRecord)
	}
	v.value = rest
	return v, nil
}

func lenPrefixed(b []byte, max int) (field, rest []byte, err error) {
	n, k := binary.Uvarint(b)
	if k <= 0 || k != uvarintLen(n) || n > uint64(max) || n > uint64(len(b)-k) {
		return nil, nil, fmt.Errorf("%w: bad length", ErrCorruptRecord)
	}
	return b[k : k+int(n)], b[k+int(n):], nil
}

// DecodeRecord decodes a stored record; the result shares no memory with b.
func DecodeRecord(seq uint64, b []byte) (Record, error) {
	v, err := decodeView(b)
	if err != nil {
		return Record{}, err
	}
	return Record{
		Seq:   seq,
		Time:  time.Unix(0, v.nanos).UTC(),
		Topic: string(v.topic),
		Kind:  v.kind,
		Value: append([]byte(nil), v.value...),
		Unit:  string(v.unit),
	}, nil
}

func uvarintLen(x uint64) int {
	n := 1
	for x >= 0x80 {
		x >>= 7
		n++
	}
	return n
}

func seqKey(seq uint64) []byte {
	return binary.BigEndian.AppendUint64(make([]byte, 0, 8), seq)
}

func keySeq(k []byte) uint64 { return binary.BigEndian.Uint64(k) }

func putSeq(k []byte, seq uint64) { binary.BigEndian.PutUint64(k, seq) }

func be64(b []byte) uint64 { return binary.BigEndian.Uint64(b) }
