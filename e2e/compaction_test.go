package e2e

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
)

// compactRevKey is where kube-apiserver's compactor records the revision it
// compacted at; every kube-apiserver watches it to learn about compactions
// (k8s.io/apiserver/pkg/storage/etcd3/compact.go).
const compactRevKey = "compact_rev_key"

// compactLikeKubeAPIServer compacts the store at its current revision the
// way kube-apiserver's compactor does: record the revision under
// compact_rev_key (compare-and-swap on its version), then Compact. A bare
// Compact would hide the compaction from kube-apiserver's watch cache, which
// would go on serving exact-revision lists from its own snapshots.
func compactLikeKubeAPIServer(ctx context.Context, t *testing.T, cli *clientv3.Client) int64 {
	t.Helper()
	cur, err := cli.Get(ctx, compactRevKey)
	if err != nil {
		t.Fatalf("reading %s: %v", compactRevKey, err)
	}
	var version int64
	if len(cur.Kvs) == 1 {
		version = cur.Kvs[0].Version
	}
	rev := cur.Header.Revision
	txn, err := cli.Txn(ctx).
		If(clientv3.Compare(clientv3.Version(compactRevKey), "=", version)).
		Then(clientv3.OpPut(compactRevKey, strconv.FormatInt(rev, 10))).
		Commit()
	if err != nil || !txn.Succeeded {
		t.Fatalf("recording compaction at %d in %s: err %v, succeeded %v", rev, compactRevKey, err, txn != nil && txn.Succeeded)
	}
	if _, err := cli.Compact(ctx, rev); err != nil {
		t.Fatalf("compacting at revision %d: %v", rev, err)
	}
	return rev
}

// isGone reports whether err is the 410 a client must answer with a
// relist.
func isGone(err error) bool {
	var status apierrors.APIStatus
	return errors.As(err, &status) && status.Status().Code == http.StatusGone
}

func testCompacted(t *testing.T, s *server) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cs := s.clientset(t)
	ns := clientNamespace(t, cs)
	cms := cs.CoreV1().ConfigMaps(ns)
	pts := cs.CoreV1().PodTemplates(ns)

	// Config maps are served through the watch cache; pod templates are not
	// (watch-cache-sizes=podtemplates#0), so they reach Keelson directly.
	cm, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "compacted"}, Data: map[string]string{"n": "0"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	oldCM := cm.ResourceVersion
	var cmUpdates []string
	pt, err := pts.Create(ctx, &corev1.PodTemplate{
		ObjectMeta: metav1.ObjectMeta{Name: "compacted", Labels: map[string]string{"n": "0"}},
		Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
			Containers: []corev1.Container{{Name: "c", Image: "busybox"}},
		}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	oldPT := pt.ResourceVersion
	for i := 1; i <= 3; i++ {
		cm.Data["n"] = strconv.Itoa(i)
		if cm, err = cms.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		cmUpdates = append(cmUpdates, cm.ResourceVersion)
		pt.Labels["n"] = strconv.Itoa(i)
		if pt, err = pts.Update(ctx, pt, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	cli := s.etcd(t)
	rev := compactLikeKubeAPIServer(ctx, t, cli)
	oldRev, _ := strconv.ParseInt(oldCM, 10, 64)
	if _, err := cli.Get(ctx, "/registry/configmaps/"+ns+"/compacted", clientv3.WithRev(oldRev)); !errors.Is(err, rpctypes.ErrCompacted) {
		t.Errorf("etcd read at revision %d after compacting at %d: %v, want %v", oldRev, rev, err, rpctypes.ErrCompacted)
	}

	exactOld := func(rv string) metav1.ListOptions {
		return metav1.ListOptions{ResourceVersion: rv, ResourceVersionMatch: metav1.ResourceVersionMatchExact}
	}
	t.Run("list at compacted resourceVersion from storage", func(t *testing.T) {
		_, err := pts.List(ctx, exactOld(oldPT))
		if !isGone(err) {
			t.Errorf("list pod templates at resourceVersion %s (compacted at %d): %v, want 410 Gone", oldPT, rev, err)
		}
	})
	t.Run("watch from compacted resourceVersion from storage", func(t *testing.T) {
		// kube-apiserver answers 200 and sends a single ERROR event with the
		// 410 status; an immediate 410 is as good for a client.
		w, err := pts.Watch(ctx, metav1.ListOptions{ResourceVersion: oldPT})
		if err != nil {
			if !isGone(err) {
				t.Errorf("watch pod templates from %s: %v, want 410 Gone", oldPT, err)
			}
			return
		}
		defer w.Stop()
		select {
		case ev, ok := <-w.ResultChan():
			status, isStatus := ev.Object.(*metav1.Status)
			if !ok || ev.Type != watch.Error || !isStatus || status.Code != http.StatusGone {
				t.Errorf("watch pod templates from %s (compacted at %d): first event %v %#v, want ERROR with code 410", oldPT, rev, ev.Type, ev.Object)
			}
		case <-ctx.Done():
			t.Errorf("watch pod templates from %s: no event", oldPT)
		}
	})
	t.Run("list at compacted resourceVersion through the watch cache", func(t *testing.T) {
		// The watch cache learns of the compaction from compact_rev_key
		// (polled every 15s), then drops its snapshots and asks storage.
		var last error
		if !waitFor(2*time.Minute, func() bool {
			_, last = cms.List(ctx, exactOld(oldCM))
			return isGone(last)
		}) {
			t.Errorf("list config maps at resourceVersion %s (compacted at %d): %v, want 410 Gone", oldCM, rev, last)
		}
	})
	t.Run("watch from compacted resourceVersion through the watch cache", func(t *testing.T) {
		// Upstream behaviour: the watch cache keeps its own history, which
		// compaction in storage does not shorten, so the watch still replays
		// every change since oldCM. It would be 410 only for revisions older
		// than the cache (before this kube-apiserver started).
		w, err := cms.Watch(ctx, metav1.ListOptions{
			ResourceVersion: oldCM,
			FieldSelector:   fields.OneTermEqualSelector("metadata.name", "compacted").String(),
		})
		if err != nil {
			t.Fatalf("watch config maps from %s: %v", oldCM, err)
		}
		defer w.Stop()
		var got []string
		for len(got) < len(cmUpdates) {
			select {
			case ev := <-w.ResultChan():
				m, ok := ev.Object.(*corev1.ConfigMap)
				if ev.Type != watch.Modified || !ok {
					t.Fatalf("watch config maps from %s: event %v %#v, want MODIFIED (got so far %v)", oldCM, ev.Type, ev.Object, got)
				}
				got = append(got, m.ResourceVersion)
			case <-ctx.Done():
				t.Fatalf("watch config maps from %s: only %v, want %v", oldCM, got, cmUpdates)
			}
		}
		if !slices.Equal(got, cmUpdates) {
			t.Errorf("watch config maps from %s replayed %v, want %v", oldCM, got, cmUpdates)
		}
	})
}
