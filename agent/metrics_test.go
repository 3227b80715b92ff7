package agent

import "testing"

// TestImageSizeBucket: kubelet's labels, its boundaries exclusive below.
func TestImageSizeBucket(t *testing.T) {
	for size, want := range map[int64]string{
		0: "N/A", 1: "0-10MB", 10 << 20: "0-10MB", 10<<20 + 1: "10MB-100MB", 300 << 20: "100MB-500MB",
		2 << 30: "1GB-5GB", 200 << 30: "GT100GB",
	} {
		if got := imageSizeBucket(size); got != want {
			t.Errorf("imageSizeBucket(%d) = %q; want %q", size, got, want)
		}
	}
}
