package fsm

import "sort"

// logChunk is the number of events in one chunk of the event log.
const logChunk = 256

// logEntry is one event with the revision that made it. before is the
// accounted size of every event appended to the log before this one.
type logEntry struct {
	rev    int64
	before int64
	ev     Event
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
	// total is the accounted size of every event ever appended (its
	// version's size); total minus the first retained entry's before is
	// what the retained history accounts for.
	total int64
}

// Len is the number of retained events.
func (l *eventLog) Len() int { return l.end - l.start }

func (l *eventLog) at(pos int) *logEntry {
	i := pos - l.base
	return &l.chunks[i/logChunk][i%logChunk]
}

// append adds an event at the end. Writer only; see the type comment for
// why this cannot disturb published copies.
func (l *eventLog) append(rev int64, ev Event) {
	i := l.end - l.base
	if i/logChunk == len(l.chunks) {
		l.chunks = append(l.chunks, new([logChunk]logEntry))
	}
	l.chunks[i/logChunk][i%logChunk] = logEntry{rev: rev, before: l.total, ev: ev}
	l.total += versionSize(ev.Kv)
	l.end++
}

// bytes is the accounted size of the retained events: each event's
// version (key, value and overhead); previous values are versions of
// their own, retained or not.
func (l *eventLog) bytes() int64 {
	if l.start == l.end {
		return 0
	}
	return l.total - l.at(l.start).before
}

// keepWithin returns the lowest retained revision from which the retained
// events account for at most limit bytes, or 0 when all of them do. The
// newest revision is always kept, and so is every event of the revision
// returned: the history may pass limit by the one revision.
func (l *eventLog) keepWithin(limit int64) int64 {
	if l.bytes() <= limit {
		return 0
	}
	i := sort.Search(l.Len(), func(i int) bool { return l.total-l.at(l.start+i).before <= limit })
	if i == l.Len() {
		return l.at(l.end - 1).rev
	}
	return l.at(l.start + i).rev
}

// search returns the position of the first retained event with revision
// >= rev (end if none).
func (l *eventLog) search(rev int64) int {
	return l.start + sort.Search(l.Len(), func(i int) bool { return l.at(l.start+i).rev >= rev })
}

// dropBefore returns the log without events below rev. Whole chunks that
// fall out are released from a fresh chunks slice; older copies keep theirs.
func (l eventLog) dropBefore(rev int64) eventLog {
	l.start = l.search(rev)
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
