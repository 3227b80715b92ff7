package job

import (
	"sort"
	"strconv"
	"strings"

	batchv1 "k8s.io/api/batch/v1"
	v1 "k8s.io/api/core/v1"
)

// interval is an inclusive range of completion indexes.
type interval struct{ first, last int }

// intervals is a sorted, non-overlapping, non-adjacent list of indexes, as
// status.completedIndexes and status.failedIndexes write them ("1,3-5").
type intervals []interval

// parseIntervals reads s, dropping indexes at or above completions and
// anything malformed (a hand-edited status must not stop the Job).
func parseIntervals(s string, completions int) intervals {
	var out []int
	for _, part := range strings.Split(s, ",") {
		if part == "" {
			continue
		}
		a, b, isRange := strings.Cut(part, "-")
		first, err := strconv.Atoi(a)
		if err != nil || first < 0 {
			continue
		}
		last := first
		if isRange {
			if last, err = strconv.Atoi(b); err != nil || last < first {
				continue
			}
		}
		for i := first; i <= last && i < completions; i++ {
			out = append(out, i)
		}
	}
	return intervals(nil).with(out)
}

// with returns oi plus the indexes ix (any order, duplicates allowed).
func (oi intervals) with(ix []int) intervals {
	all := make([]int, 0, oi.total()+len(ix))
	for _, iv := range oi {
		for i := iv.first; i <= iv.last; i++ {
			all = append(all, i)
		}
	}
	all = append(all, ix...)
	sort.Ints(all)
	var out intervals
	for _, i := range all {
		if n := len(out); n > 0 && i <= out[n-1].last+1 {
			out[n-1].last = max(out[n-1].last, i)
			continue
		}
		out = append(out, interval{i, i})
	}
	return out
}

func (oi intervals) has(ix int) bool {
	k := sort.Search(len(oi), func(i int) bool { return oi[i].last >= ix })
	return k < len(oi) && oi[k].first <= ix
}

func (oi intervals) total() int {
	n := 0
	for _, iv := range oi {
		n += iv.last - iv.first + 1
	}
	return n
}

func (oi intervals) String() string {
	var b strings.Builder
	for i, iv := range oi {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(iv.first))
		if iv.last > iv.first {
			// As upstream: a run of two is written as a list ("0,1"), a
			// longer one as a range ("0-2").
			sep := byte('-')
			if iv.last == iv.first+1 {
				sep = ','
			}
			b.WriteByte(sep)
			b.WriteString(strconv.Itoa(iv.last))
		}
	}
	return b.String()
}

// completionIndex is p's index, or -1 if it has none or a malformed one.
func completionIndex(p *v1.Pod) int {
	s, ok := p.Annotations[batchv1.JobCompletionIndexAnnotation]
	if !ok {
		return -1
	}
	i, err := strconv.Atoi(s)
	if err != nil || i < 0 {
		return -1
	}
	return i
}

// validIndex returns p's index if it is within the Job's completions.
func validIndex(job *batchv1.Job, p *v1.Pod) (int, bool) {
	ix := completionIndex(p)
	return ix, ix >= 0 && job.Spec.Completions != nil && ix < int(*job.Spec.Completions)
}

func annotationInt(p *v1.Pod, key string) int32 {
	v, err := strconv.ParseInt(p.Annotations[key], 10, 32)
	if err != nil || v < 0 {
		return 0
	}
	return int32(v)
}

// firstPending returns up to n indexes below completions that are neither
// in done nor in busy, lowest first.
func firstPending(n, completions int, done intervals, busy []int) []int {
	taken := done.with(busy)
	var out []int
	for i := 0; i < completions && len(out) < n; i++ {
		if !taken.has(i) {
			out = append(out, i)
		}
	}
	return out
}
