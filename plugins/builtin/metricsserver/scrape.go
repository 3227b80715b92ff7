package metricsserver

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/rest"
)

// resourcePath is the kubelet endpoint the scraper reads.
const resourcePath = "/metrics/resource"

// maxResponse bounds one node's answer (about 500 bytes a container).
const maxResponse = 64 << 20

// nodeReader reads one node's /metrics/resource.
type nodeReader interface {
	read(ctx context.Context, node *v1.Node) (nodeReads, error)
}

// kubeletReader asks the node's agent over its kubelet API with the
// plugin's own identity, which needs nodes/metrics.
type kubeletReader struct {
	client *http.Client
	clock  clockwork.Clock
}

func newKubeletReader(cfg *rest.Config, clock clockwork.Clock) (*kubeletReader, error) {
	c := rest.CopyConfig(cfg)
	// The agents' serving certificates are checked against the cluster CA
	// for their own address, not the API server's name.
	c.TLSClientConfig.ServerName = ""
	rt, err := rest.TransportFor(c)
	if err != nil {
		return nil, fmt.Errorf("building the kubelet API client: %w", err)
	}
	return &kubeletReader{client: &http.Client{Transport: rt}, clock: clock}, nil
}

// addressTypes is the order kube-apiserver tries a node's addresses in.
var addressTypes = []v1.NodeAddressType{v1.NodeInternalIP, v1.NodeHostName, v1.NodeInternalDNS, v1.NodeExternalDNS, v1.NodeExternalIP}

// kubeletURL is the node's kubelet API endpoint.
func kubeletURL(node *v1.Node) (string, error) {
	port := node.Status.DaemonEndpoints.KubeletEndpoint.Port
	if port <= 0 {
		return "", fmt.Errorf("node %q reports no kubelet port", node.Name)
	}
	for _, t := range addressTypes {
		for _, a := range node.Status.Addresses {
			if a.Type == t && a.Address != "" {
				return "https://" + net.JoinHostPort(a.Address, strconv.Itoa(int(port))), nil
			}
		}
	}
	return "", fmt.Errorf("node %q reports no address", node.Name)
}

func (k *kubeletReader) read(ctx context.Context, node *v1.Node) (nodeReads, error) {
	base, err := kubeletURL(node)
	if err != nil {
		return nodeReads{}, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+resourcePath, nil)
	if err != nil {
		return nodeReads{}, err
	}
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	resp, err := k.client.Do(req)
	if err != nil {
		return nodeReads{}, fmt.Errorf("scraping node %q: %w", node.Name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nodeReads{}, fmt.Errorf("scraping node %q: %s: %s", node.Name, resp.Status, body)
	}
	reads, err := parseResource(io.LimitReader(resp.Body, maxResponse), k.clock.Now())
	if err != nil {
		return nodeReads{}, fmt.Errorf("node %q: %w", node.Name, err)
	}
	return reads, nil
}

// scraper reads every node each resolution and replaces the store's
// content with what it read, as metrics-server does.
type scraper struct {
	nodes      corelisters.NodeLister
	reader     nodeReader
	store      *store
	resolution time.Duration
	timeout    time.Duration
	clock      clockwork.Clock
	logger     *slog.Logger
}

// run scrapes now and then every resolution until ctx ends.
func (s *scraper) run(ctx context.Context) {
	t := s.clock.NewTicker(s.resolution)
	defer t.Stop()
	for {
		s.scrape(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.Chan():
		}
	}
}

// scrape reads all nodes at once, each within the timeout. A node that
// fails is missing from this round, so its usage is not reported until
// it answers twice again.
func (s *scraper) scrape(ctx context.Context) {
	nodes, err := s.nodes.List(labels.Everything())
	if err != nil {
		s.logger.Error("listing nodes to scrape", "err", err)
		return
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	b := newBatch()
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, n := range nodes {
		wg.Go(func() {
			reads, err := s.reader.read(ctx, n)
			if err != nil {
				s.logger.Warn("scraping node", "node", n.Name, "err", err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if reads.hasNode {
				b.nodes[n.Name] = reads.node
			}
			for ref, cs := range reads.containers {
				b.pods[ref] = cs
			}
		})
	}
	wg.Wait()
	if ctx.Err() != nil && ctx.Err() != context.DeadlineExceeded {
		return // stopping: keep what the store has
	}
	s.store.update(b)
}
