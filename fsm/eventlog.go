package fsm

import (
	"sort"

	"go.etcd.io/etcd/api/v3/mvccpb"
)

// logChunk is the number of events in one chunk of the event log.
const logChunk = 256

// logEntry is one event with the revision that made it, in 24 bytes: the
// event's type is not stored, a delete's Kv being its tombstone (Version
// 0) and a put's never. prev is nil when the key did not exist.
type logEntry struct {
	rev      int64
	kv, prev *record
}

// event is the entry as a watcher sees it, in fresh KeyValues.
func (e *logEntry) event() Event {
	return Event{Type: e.eventType(), Kv: e.kv.kv(), PrevKv: e.prev.kv()}
}

func (e *logEntry) eventType() mvccpb.Event_EventType {
	if e.kv.isTombstone() {
		return mvccpb.DELETE
	}
	return mvccpb.PUT
}

// eventLog is the retained event history: every event in revision order
// (and op order within a revision). Events are appended at the end by the
// writer and dropped from the front by compaction, so instead of a tree it
// is a list of fixed-size chunks addressed by absolute position.
//
// A copy of an eventLog (what a View holds) sees positions [start, end).
// The writer appends only at positions >= its own end, which is >= the end
// of every copy taken before, so the chunk slots and chunks-slice slots it
// writes are ones no published copy ever reads: the copies share backing
// arrays without racing.
type eventLog struct {
	chunks []*[logChunk]logEntry
	base   int // absolute position of chunks[0][0]
	start  int // absolute position of the first retained event
	end    int // absolute position one past the last event
	// bytes is the accounted size of the retained events (each one its
	// version's size), kept up to date by append and dropBefore so that no
	// entry carries it.
	size int64
}

// Len is the number of retained events.
func (l *eventLog) Len() int { return l.end - l.start }

func (l *eventLog) at(pos int) *logEntry {
	i := pos - l.base
	return &l.chunks[i/logChunk][i%logChunk]
}

// append adds an event at the end. Writer only; see the type comment for
// why this cannot disturb published copies.
func (l *eventLog) append(rev int64, kv, prev *record) {
	i := l.end - l.base
	if i/logChunk == len(l.chunks) {
		l.chunks = append(l.chunks, new([logChunk]logEntry))
	}
	l.chunks[i/logChunk][i%logChunk] = logEntry{rev: rev, kv: kv, prev: prev}
	l.size += kv.decode().size()
	l.end++
}

// bytes is the accounted size of the retained events: each event's
// version (key, value and overhead); previous values are versions of
// their own, retained or not.
func (l *eventLog) bytes() int64 { return l.size }

// keepWithin returns the lowest retained revision from which the retained
// events account for at most limit bytes, or 0 when all of them do. The
// newest revision is always kept, and so is every event of the revision
// returned: the history may pass limit by the one revision.
//
// It walks the events it would drop, as compaction to the answer does.
func (l *eventLog) keepWithin(limit int64) int64 {
	if l.size <= limit {
		return 0
	}
	left := l.size
	for pos := l.start; pos < l.end-1; pos++ {
		left -= l.at(pos).kv.decode().size()
		if left <= limit {
			return l.at(pos + 1).rev
		}
	}
	return l.at(l.end - 1).rev
}

// search returns the position of the first retained event with revision
// >= rev (end if none).
func (l *eventLog) search(rev int64) int {
	return l.start + sort.Search(l.Len(), func(i int) bool { return l.at(l.start+i).rev >= rev })
}

// dropBefore returns the log without events below rev. Whole chunks that
// fall out are released from a fresh chunks slice; older copies keep theirs.
func (l eventLog) dropBefore(rev int64) eventLog {
	start := l.search(rev)
	for pos := l.start; pos < start; pos++ {
		l.size -= l.at(pos).kv.decode().size()
	}
	l.start = start
	if drop := (l.start - l.base) / logChunk; drop > 0 {
		l.chunks = append([]*[logChunk]logEntry(nil), l.chunks[drop:]...)
		l.base += drop * logChunk
	}
	return l
}

// revisions calls fn with each retained revision and the positions
// [lo, hi) of its events, in order, until fn returns false.
func (l *eventLog) revisions(fn func(rev int64, lo, hi int) bool) {
	for lo := l.start; lo < l.end; {
		rev := l.at(lo).rev
		hi := lo + 1
		for hi < l.end && l.at(hi).rev == rev {
			hi++
		}
		if !fn(rev, lo, hi) {
			return
		}
		lo = hi
	}
}

// revisionCount is the number of distinct retained revisions.
func (l *eventLog) revisionCount() int {
	n := 0
	l.revisions(func(int64, int, int) bool { n++; return true })
	return n
}
