package localstorage

import "testing"

func TestVolumeAPIPathRoundTrip(t *testing.T) {
	name, ok := VolumeFromAPIPath(VolumeAPIPath("pvc-1234"))
	if !ok || name != "pvc-1234" || !IsAPIPath(VolumeAPIPath("pvc-1234")) {
		t.Fatalf("round trip gave %q %v", name, ok)
	}
	if IsAPIPath("/stats/summary") {
		t.Error("/stats/summary taken for a volume path")
	}
}

func TestCheckVolumeName(t *testing.T) {
	for _, bad := range []string{"", ".", "..", "a/b", "../etc", "UPPER", "a b"} {
		if CheckVolumeName(bad) == nil {
			t.Errorf("%q accepted as a volume name", bad)
		}
	}
	for _, good := range []string{"pvc-0c6e2d3a-59a4-4b4e-9f3e-1d2c3b4a5f60", "data.1"} {
		if err := CheckVolumeName(good); err != nil {
			t.Errorf("%q refused: %v", good, err)
		}
	}
}
