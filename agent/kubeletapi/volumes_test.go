package kubeletapi

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
)

type fakeVolumes struct {
	removed []string
	err     error
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
