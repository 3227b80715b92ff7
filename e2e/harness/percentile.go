package harness

import (
	"slices"
	"time"
)

// Percentile is the nearest-rank p-th percentile (0 < p <= 100) of d, which
// it does not reorder; 0 for none.
func Percentile(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(d))
	i := (p*len(s)+99)/100 - 1
	return s[max(0, min(i, len(s)-1))]
}
