package metricsserver

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
)

// fakeReader answers per node: reads, or an error.
type fakeReader map[string]func() (nodeReads, error)

func (f fakeReader) read(_ context.Context, n *v1.Node) (nodeReads, error) { return f[n.Name]() }

func nodeLister(t testing.TB, names ...string) corelisters.NodeLister {
	idx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	for _, n := range names {
		if err := idx.Add(&v1.Node{ObjectMeta: metav1.ObjectMeta{Name: n}}); err != nil {
			t.Fatal(err)
		}
	}
	return corelisters.NewNodeLister(idx)
}

func TestScrapeReplacesTheStoreWithWhatAnswered(t *testing.T) {
	cpu := uint64(0)
	healthy := func() (nodeReads, error) {
		cpu += 15e9
		ts := at(int(cpu / 1e9))
		return nodeReads{node: point{ts: ts, cpuNanos: cpu, workingSet: 1}, hasNode: true,
			containers: map[podRef]map[string]containerPoint{{"default", "web"}: {"app": {point: point{ts: ts, cpuNanos: cpu / 2}, start: at(-100)}}}}, nil
	}
	broken, flakyCPU := false, uint64(0)
	flaky := func() (nodeReads, error) {
		if broken {
			return nodeReads{}, errors.New("connection refused")
		}
		flakyCPU += 15e9
		return nodeReads{node: point{ts: at(int(flakyCPU / 1e9)), cpuNanos: flakyCPU, workingSet: 1}, hasNode: true}, nil
	}
	st := newStore(15 * time.Second)
	s := &scraper{nodes: nodeLister(t, "good", "flaky"), reader: fakeReader{"good": healthy, "flaky": flaky}, store: st,
		resolution: 15 * time.Second, timeout: 10 * time.Second, clock: clockwork.NewFakeClock(), logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	s.scrape(context.Background())
	s.scrape(context.Background())
	if u, ok := st.node("good"); !ok || u.nanoCores != 1e9 {
		t.Errorf("good node: %+v %v, want one core", u, ok)
	}
	if _, _, ok := st.pod(podRef{"default", "web"}); !ok {
		t.Error("the good node's pod has no usage after two scrapes")
	}
	if _, ok := st.node("flaky"); !ok {
		t.Error("the flaky node has no usage after two answers")
	}
	broken = true
	s.scrape(context.Background())
	if _, ok := st.node("flaky"); ok {
		t.Error("a node that did not answer the latest scrape still has usage")
	}
	if _, ok := st.node("good"); !ok {
		t.Error("a failing node took the others' usage with it")
	}
}
