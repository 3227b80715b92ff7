package kubeletapi

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/keelson/keelson/internal/localstorage"
)

type fakeVolumes struct {
	removed []string
	ensured map[string]int64
	err     error
}

func (f *fakeVolumes) EnsureLocalVolume(name string, capacity int64) (localstorage.VolumeState, error) {
	if f.err != nil {
		return localstorage.VolumeState{}, f.err
	}
	if f.ensured == nil {
		f.ensured = map[string]int64{}
	}
	f.ensured[name] = capacity
	return localstorage.VolumeState{CapacityEnforced: true, Enforcement: "btrfs-qgroup"}, nil
}

func (f *fakeVolumes) RemoveLocalVolume(name string) error {
	if f.err != nil {
		return f.err
	}
	f.removed = append(f.removed, name)
	return nil
}

var errBusy = errors.New("busy")

// TestRemoveLocalVolume: the call the local-path provisioner makes needs
// nodes/storage (not nodes/proxy), and the agent's refusal of a volume in
// use comes back as 409 Conflict.
func TestRemoveLocalVolume(t *testing.T) {
	r := httptest.NewRequest(http.MethodDelete, "https://node/storage/local-path/pvc-1", nil)
	if verb, sub := attributes(r); verb != "delete" || sub != "storage" {
		t.Errorf("authorized as %s nodes/%s, want delete nodes/storage", verb, sub)
	}
	for _, tc := range []struct {
		err  error
		want int
	}{{nil, http.StatusNoContent}, {errBusy, http.StatusConflict}, {errors.New("disk on fire"), http.StatusInternalServerError}} {
		vols := &fakeVolumes{err: tc.err}
		s := &Server{opts: Options{Volumes: vols, Errors: Classifier{Conflict: func(err error) bool { return errors.Is(err, errBusy) }}}}
		r := httptest.NewRequest(http.MethodDelete, "https://node/storage/local-path/pvc-1", nil)
		r.SetPathValue("name", "pvc-1")
		w := httptest.NewRecorder()
		s.removeLocalVolume(w, r)
		if w.Code != tc.want {
			t.Errorf("error %v answered %d, want %d", tc.err, w.Code, tc.want)
		}
		if tc.err == nil && (len(vols.removed) != 1 || vols.removed[0] != "pvc-1") {
			t.Errorf("removed %v", vols.removed)
		}
	}
}

// TestEnsureLocalVolume: the provisioner's PUT needs update nodes/storage,
// carries the capacity, and gets the enforcement back; a request without
// a capacity is refused naming the field.
func TestEnsureLocalVolume(t *testing.T) {
	r := httptest.NewRequest(http.MethodPut, "https://node/storage/local-path/pvc-1", nil)
	if verb, sub := attributes(r); verb != "update" || sub != "storage" {
		t.Errorf("authorized as %s nodes/%s, want update nodes/storage", verb, sub)
	}
	for _, tc := range []struct {
		body string
		err  error
		want int
	}{
		{`{"capacityBytes":67108864}`, nil, http.StatusOK},
		{`{}`, nil, http.StatusBadRequest},
		{`not json`, nil, http.StatusBadRequest},
		{`{"capacityBytes":1}`, errBusy, http.StatusConflict},
	} {
		vols := &fakeVolumes{err: tc.err}
		s := &Server{opts: Options{Volumes: vols, Errors: Classifier{Conflict: func(err error) bool { return errors.Is(err, errBusy) }}}}
		r := httptest.NewRequest(http.MethodPut, "https://node/storage/local-path/pvc-1", strings.NewReader(tc.body))
		r.SetPathValue("name", "pvc-1")
		w := httptest.NewRecorder()
		s.ensureLocalVolume(w, r)
		if w.Code != tc.want {
			t.Errorf("body %s, error %v answered %d (%s), want %d", tc.body, tc.err, w.Code, w.Body, tc.want)
		}
		if tc.want == http.StatusBadRequest && !strings.Contains(w.Body.String(), "capacityBytes") {
			t.Errorf("refusal of %s does not name capacityBytes: %s", tc.body, w.Body)
		}
		if tc.want != http.StatusOK {
			continue
		}
		var st localstorage.VolumeState
		if err := json.NewDecoder(w.Body).Decode(&st); err != nil || !st.CapacityEnforced || st.Enforcement != "btrfs-qgroup" {
			t.Errorf("answer %+v %v", st, err)
		}
		if vols.ensured["pvc-1"] != 67108864 {
			t.Errorf("ensured %v", vols.ensured)
		}
	}
}
