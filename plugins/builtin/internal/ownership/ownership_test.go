package ownership

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
)

var rsKind = schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "ReplicaSet"}

func owner(deleting bool) *metav1.ObjectMeta {
	m := &metav1.ObjectMeta{Name: "web", Namespace: "ns", UID: "owner-uid"}
	if deleting {
		ts := metav1.Now()
		m.DeletionTimestamp = &ts
	}
	return m
}

func dependent(name string, controller types.UID, opts ...func(*v1.Pod)) *v1.Pod {
	p := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", UID: types.UID(name + "-uid")}}
	if controller != "" {
		yes := true
		p.OwnerReferences = []metav1.OwnerReference{{Kind: "ReplicaSet", Name: "x", UID: controller, Controller: &yes}}
	}
	for _, o := range opts {
		o(p)
	}
	return p
}

type patchCall struct {
	name  string
	patch map[string]any
}

func TestClaim(t *testing.T) {
	matching := func(p *v1.Pod) bool { return p.Labels["match"] != "no" }
	noMatch := func(p *v1.Pod) { p.Labels = map[string]string{"match": "no"} }
	terminating := func(p *v1.Pod) { ts := metav1.Now(); p.DeletionTimestamp = &ts }
	otherNS := func(p *v1.Pod) { p.Namespace = "elsewhere" }
	for _, tc := range []struct {
		name        string
		deleting    bool
		pod         *v1.Pod
		canAdopt    error
		patchErr    error
		wantClaimed bool
		wantPatch   string // "adopt", "release" or ""
		wantErr     bool
	}{
		{name: "own and matching: kept", pod: dependent("a", "owner-uid"), wantClaimed: true},
		{name: "someone else's: ignored", pod: dependent("a", "other-uid"), wantClaimed: false},
		{name: "own, no longer matching: released", pod: dependent("a", "owner-uid", noMatch), wantPatch: "release"},
		{name: "own, not matching, owner being deleted: kept as is", deleting: true, pod: dependent("a", "owner-uid", noMatch)},
		{name: "matching orphan: adopted", pod: dependent("a", ""), wantClaimed: true, wantPatch: "adopt"},
		{name: "orphan not matching: ignored", pod: dependent("a", "", noMatch)},
		{name: "terminating orphan: ignored", pod: dependent("a", "", terminating)},
		{name: "orphan in another namespace: ignored", pod: dependent("a", "", otherNS)},
		{name: "orphan, owner being deleted: ignored", deleting: true, pod: dependent("a", "")},
		{name: "orphan, fresh read says owner is gone: error", pod: dependent("a", ""), canAdopt: errors.New("gone"), wantErr: true},
		{name: "orphan deleted meanwhile: not claimed, no error", pod: dependent("a", ""), patchErr: apierrors.NewNotFound(v1.Resource("pods"), "a"), wantPatch: "adopt"},
		{name: "release of a replaced pod (uid precondition): no error", pod: dependent("a", "owner-uid", noMatch), patchErr: apierrors.NewInvalid(schema.GroupKind{Kind: "Pod"}, "a", nil), wantPatch: "release"},
		{name: "release fails: error", pod: dependent("a", "owner-uid", noMatch), patchErr: errors.New("boom"), wantPatch: "release", wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var calls []patchCall
			patch := func(_ context.Context, ns, name string, data []byte) error {
				var m map[string]any
				if err := json.Unmarshal(data, &m); err != nil {
					t.Fatalf("patch is not JSON: %v", err)
				}
				calls = append(calls, patchCall{name, m})
				return tc.patchErr
			}
			c := NewClaimer(owner(tc.deleting), rsKind, func(context.Context) error { return tc.canAdopt }, patch)
			claimed, err := Claim(context.Background(), c, []*v1.Pod{tc.pod}, matching)
			if (err != nil) != tc.wantErr {
				t.Errorf("err = %v, want error %v", err, tc.wantErr)
			}
			if got := len(claimed) == 1; got != tc.wantClaimed {
				t.Errorf("claimed = %v, want %v", got, tc.wantClaimed)
			}
			switch {
			case tc.wantPatch == "" && len(calls) > 0:
				t.Errorf("unexpected patch %v", calls)
			case tc.wantPatch != "" && len(calls) != 1:
				t.Errorf("patches %v, want one %s", calls, tc.wantPatch)
			case tc.wantPatch != "":
				checkPatch(t, tc.wantPatch, calls[0].patch, tc.pod.UID)
			}
		})
	}
}

func checkPatch(t *testing.T, kind string, p map[string]any, dependent types.UID) {
	t.Helper()
	meta := p["metadata"].(map[string]any)
	if meta["uid"] != string(dependent) {
		t.Errorf("%s patch does not pin the dependent's uid: %v", kind, p)
	}
	ref := meta["ownerReferences"].([]any)[0].(map[string]any)
	switch kind {
	case "adopt":
		if ref["uid"] != "owner-uid" || ref["controller"] != true || ref["blockOwnerDeletion"] != true || ref["kind"] != "ReplicaSet" || ref["apiVersion"] != "apps/v1" {
			t.Errorf("adopt patch reference %v", ref)
		}
	case "release":
		if ref["uid"] != "owner-uid" || ref["$patch"] != "delete" {
			t.Errorf("release patch reference %v", ref)
		}
	}
}

func TestCanAdoptIsAskedOncePerClaimer(t *testing.T) {
	asked := 0
	c := NewClaimer(owner(false), rsKind, func(context.Context) error { asked++; return nil },
		func(context.Context, string, string, []byte) error { return nil })
	claimed, err := Claim(context.Background(), c, []*v1.Pod{dependent("a", ""), dependent("b", ""), dependent("c", "")}, func(*v1.Pod) bool { return true })
	if err != nil || len(claimed) != 3 || asked != 1 {
		t.Errorf("claimed %d, err %v, owner re-read %d times; want 3, nil, 1", len(claimed), err, asked)
	}
}

func TestRecheck(t *testing.T) {
	ts := metav1.Now()
	for _, tc := range []struct {
		name  string
		fresh metav1.Object
		err   error
		ok    bool
	}{
		{"same and alive", &metav1.ObjectMeta{UID: "u"}, nil, true},
		{"replaced", &metav1.ObjectMeta{UID: "other"}, nil, false},
		{"being deleted", &metav1.ObjectMeta{UID: "u", DeletionTimestamp: &ts}, nil, false},
		{"read fails", nil, errors.New("timeout"), false},
	} {
		err := Recheck("u", func(context.Context) (metav1.Object, error) { return tc.fresh, tc.err })(context.Background())
		if (err == nil) != tc.ok {
			t.Errorf("%s: err = %v", tc.name, err)
		}
	}
}
