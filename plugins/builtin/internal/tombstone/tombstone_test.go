package tombstone

import (
	"testing"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
)

func TestObject(t *testing.T) {
	pod := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p"}}
	for _, tc := range []struct {
		name string
		in   any
		ok   bool
	}{
		{"the object", pod, true},
		{"a tombstone of it", cache.DeletedFinalStateUnknown{Key: "ns/p", Obj: pod}, true},
		{"a tombstone of another type", cache.DeletedFinalStateUnknown{Key: "ns/p", Obj: &v1.Node{}}, false},
		{"another type", &v1.Node{}, false},
		{"nothing", nil, false},
	} {
		got, ok := Object[*v1.Pod](tc.in)
		if ok != tc.ok || (ok && got != pod) {
			t.Errorf("%s: %v, %v", tc.name, got, ok)
		}
	}
}
