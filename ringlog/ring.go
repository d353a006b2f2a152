package ringlog

// ring holds the most recent records in memory, indexed by seq. Seqs in it
// are contiguous (ids are handed out one by one within a run). It never
// drops a record that is not yet committed: it grows instead, and shrinks
// back once the writer has caught up. Committed records are kept up to a
// count and up to a number of bytes, so that large values cannot make
// the count cost more memory than the device has.
type ring struct {
	buf      []entry // len is a power of two
	start    uint64  // seq of the oldest entry
	n        int
	min      int   // capacity to return to after growing
	bytes    int64 // sum of the entries' sizes
	maxBytes int64 // bound on bytes, kept by evicting committed entries
}

func (r *ring) init(capacity int, maxBytes int64) {
	c := 1
	for c < capacity {
		c <<= 1
	}
	r.buf = make([]entry, c)
	r.min = c
	r.maxBytes = maxBytes
}

// size is what an entry costs in memory, roughly: its bytes and the
// record's fixed part.
func (e *entry) size() int64 {
	return int64(len(e.enc)+len(e.rec.Topic)+len(e.rec.Unit)) + entryOverhead
}

const entryOverhead = 128

func (r *ring) len() int { return r.n }

// end is one past the newest seq in the ring.
func (r *ring) end() uint64 { return r.start + uint64(r.n) }

func (r *ring) at(seq uint64) *entry { return &r.buf[seq&uint64(len(r.buf)-1)] }

// push adds e, whose seq must be end() (or anything when empty). When full
// it evicts the oldest entry if it is committed, and grows otherwise.
func (r *ring) push(e entry, committed uint64) {
	if r.n == 0 {
		r.start = e.rec.Seq
	}
	if r.n == len(r.buf) {
		if r.start <= committed {
			r.evictOldest()
		} else {
			r.resize(2 * len(r.buf))
		}
	}
	*r.at(e.rec.Seq) = e
	r.n++
	r.bytes += e.size()
	r.trim(committed)
}

// trim evicts the oldest committed entries while the ring holds more
// than maxBytes, keeping the newest entry.
func (r *ring) trim(committed uint64) {
	for r.bytes > r.maxBytes && r.n > 1 && r.start <= committed {
		r.evictOldest()
	}
}

func (r *ring) evictOldest() {
	e := r.at(r.start)
	r.bytes -= e.size()
	*e = entry{}
	r.start++
	r.n--
}

// evictBelow drops entries with seq < seq (they must be committed).
func (r *ring) evictBelow(seq uint64) {
	for r.n > 0 && r.start < seq {
		r.evictOldest()
	}
}

// shrink returns to the minimum capacity once the entries fit, keeping
// the newest ones. Growth to a few times the minimum is normal at high
// append rates (one sync interval's records) and is kept, so the ring does
// not regrow every interval; a bigger one (a disk outage) is given back.
func (r *ring) shrink(committed uint64) {
	if len(r.buf) <= 4*r.min {
		return
	}
	for r.n > r.min && r.start <= committed {
		r.evictOldest()
	}
	if r.n <= r.min {
		r.resize(r.min)
	}
}

func (r *ring) resize(c int) {
	nb := make([]entry, c)
	for i := 0; i < r.n; i++ {
		seq := r.start + uint64(i)
		nb[seq&uint64(c-1)] = *r.at(seq)
	}
	r.buf = nb
}
