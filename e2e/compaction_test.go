package e2e

import (
	"context"
	"errors"
	"github.com/keelson/keelson/e2e/harness"
	"net/http"
	"slices"
	"strconv"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
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

// history is an object created and then updated three times, with the
// resourceVersion it was created at and those of its updates.
type history struct {
	created string
	updates []string
}

// writeHistory creates the config map and the pod template "compacted" and
// updates each three times.
func writeHistory(ctx context.Context, t *testing.T, cs kubernetes.Interface, ns string) (cm, pt history) {
	t.Helper()
	cms := cs.CoreV1().ConfigMaps(ns)
	pts := cs.CoreV1().PodTemplates(ns)
	c, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "compacted"}, Data: map[string]string{"n": "0"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p, err := pts.Create(ctx, &corev1.PodTemplate{
		ObjectMeta: metav1.ObjectMeta{Name: "compacted", Labels: map[string]string{"n": "0"}},
		Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
			Containers: []corev1.Container{{Name: "c", Image: "busybox"}},
		}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cm.created, pt.created = c.ResourceVersion, p.ResourceVersion
	for i := 1; i <= 3; i++ {
		c.Data["n"] = strconv.Itoa(i)
		if c, err = cms.Update(ctx, c, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		p.Labels["n"] = strconv.Itoa(i)
		if p, err = pts.Update(ctx, p, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		cm.updates = append(cm.updates, c.ResourceVersion)
		pt.updates = append(pt.updates, p.ResourceVersion)
	}
	return cm, pt
}

func exactRV(rv string) metav1.ListOptions {
	return metav1.ListOptions{ResourceVersion: rv, ResourceVersionMatch: metav1.ResourceVersionMatchExact}
}

// testCompacted checks what a client sees when it asks for a
// resourceVersion that compaction removed: 410 Gone, so it relists.
// Config maps are served through the watch cache; pod templates are not
// (watch-cache-sizes=podtemplates#0), so they reach Keelson directly.
func testCompacted(t *testing.T, s *harness.Server) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cs := s.Clientset(t)
	ns := clientNamespace(t, cs)
	cm, pt := writeHistory(ctx, t, cs, ns)

	cli := s.Etcd(t)
	rev := compactLikeKubeAPIServer(ctx, t, cli)
	oldRev, _ := strconv.ParseInt(cm.created, 10, 64)
	if _, err := cli.Get(ctx, "/registry/configmaps/"+ns+"/compacted", clientv3.WithRev(oldRev)); !errors.Is(err, rpctypes.ErrCompacted) {
		t.Errorf("etcd read at revision %d after compacting at %d: %v, want %v", oldRev, rev, err, rpctypes.ErrCompacted)
	}
	t.Logf("compacted at revision %d; config map history %+v, pod template history %+v", rev, cm, pt)
	t.Run("from storage", func(t *testing.T) { testCompactedStorage(ctx, t, cs.CoreV1().PodTemplates(ns), pt, rev) })
	t.Run("through the watch cache", func(t *testing.T) { testCompactedCache(ctx, t, cs.CoreV1().ConfigMaps(ns), cm) })
}

func testCompactedStorage(ctx context.Context, t *testing.T, pts typedcorev1.PodTemplateInterface, pt history, rev int64) {
	if _, err := pts.List(ctx, exactRV(pt.created)); !isGone(err) {
		t.Errorf("list pod templates at compacted resourceVersion %s: %v, want 410 Gone", pt.created, err)
	}
	// kube-apiserver answers 200 and sends a single ERROR event with the
	// 410 status; an immediate 410 is as good for a client.
	w, err := pts.Watch(ctx, metav1.ListOptions{ResourceVersion: pt.created})
	if err != nil {
		if !isGone(err) {
			t.Errorf("watch pod templates from compacted resourceVersion %s: %v, want 410 Gone", pt.created, err)
		}
		return
	}
	defer w.Stop()
	select {
	case ev, ok := <-w.ResultChan():
		status, isStatus := ev.Object.(*metav1.Status)
		if !ok || ev.Type != watch.Error || !isStatus || status.Code != http.StatusGone {
			t.Errorf("watch pod templates from compacted resourceVersion %s: first event %v %#v, want ERROR with code 410", pt.created, ev.Type, ev.Object)
		}
	case <-ctx.Done():
		t.Errorf("watch pod templates from compacted resourceVersion %s: no event", pt.created)
	}
	// A watch from the compaction revision itself is not too old: it sees
	// the next change.
	from := strconv.FormatInt(rev, 10)
	w2, err := pts.Watch(ctx, metav1.ListOptions{ResourceVersion: from})
	if err != nil {
		t.Fatalf("watch pod templates from the compaction revision %s: %v", from, err)
	}
	defer w2.Stop()
	p, err := pts.Get(ctx, "compacted", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p.Labels["n"] = "after-compaction"
	if p, err = pts.Update(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := modifiedRVs(ctx, t, w2, 1); !slices.Equal(got, []string{p.ResourceVersion}) {
		t.Errorf("watch pod templates from the compaction revision %s: %v, want the update at %s", from, got, p.ResourceVersion)
	}
}

func testCompactedCache(ctx context.Context, t *testing.T, cms typedcorev1.ConfigMapInterface, cm history) {
	// The watch cache learns of the compaction from compact_rev_key
	// (polled every 15s), then drops its older snapshots and asks storage.
	var last error
	if !waitFor(2*time.Minute, func() bool {
		_, last = cms.List(ctx, exactRV(cm.created))
		return isGone(last)
	}) {
		t.Errorf("list config maps at compacted resourceVersion %s: %v, want 410 Gone", cm.created, last)
	}
	// Upstream behaviour: the watch cache keeps its own history, which
	// compaction in storage does not shorten, so a watch still replays every
	// change since then. It is 410 only for revisions older than the cache
	// (from before this kube-apiserver started).
	w, err := cms.Watch(ctx, metav1.ListOptions{
		ResourceVersion: cm.created,
		FieldSelector:   fields.OneTermEqualSelector("metadata.name", "compacted").String(),
	})
	if err != nil {
		t.Fatalf("watch config maps from %s: %v", cm.created, err)
	}
	defer w.Stop()
	if got := modifiedRVs(ctx, t, w, len(cm.updates)); !slices.Equal(got, cm.updates) {
		t.Errorf("watch config maps from %s replayed %v, want %v", cm.created, got, cm.updates)
	}
}

// modifiedRVs reads n MODIFIED events and returns their resourceVersions.
func modifiedRVs(ctx context.Context, t *testing.T, w watch.Interface, n int) []string {
	t.Helper()
	var got []string
	for len(got) < n {
		select {
		case ev := <-w.ResultChan():
			obj, err := meta.Accessor(ev.Object)
			if ev.Type != watch.Modified || err != nil {
				t.Fatalf("watch: event %v %#v, want MODIFIED (got so far %v)", ev.Type, ev.Object, got)
			}
			got = append(got, obj.GetResourceVersion())
		case <-ctx.Done():
			t.Fatalf("watch: only %d of %d events: %v", len(got), n, got)
		}
	}
	return got
}
