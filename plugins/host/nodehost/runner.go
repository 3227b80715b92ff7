package nodehost

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"slices"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/keelson/keelson/plugins/host"
	"github.com/keelson/keelson/plugins/proto"
)

// runner holds the supervisor of the current set of node plugins.
type runner struct {
	cfg    Config
	status *statusWriter

	// mu guards sup, which a metrics scrape reads while apply replaces it.
	mu      sync.Mutex
	sup     *host.Supervisor
	current string // the running set's specs, encoded
	names   []string
}

// selection is what this node should run: the specs, and the declared
// plugins it does not run, with why.
type selection struct {
	specs   []host.Spec
	skipped map[string]string
	// refused are declarations this node cannot launch (bad file name).
	refused map[string]string
}

// desired reads the declarations and the Node's labels from the informers.
func (r *runner) desired(cms, nodes cache.Store) selection {
	sel := selection{skipped: map[string]string{}, refused: map[string]string{}}
	obj, ok, _ := cms.GetByKey(host.NodePluginsNamespace + "/" + host.NodePluginsConfigMap)
	if !ok {
		return sel
	}
	decls, err := host.DecodeNodePlugins(obj.(*v1.ConfigMap).Data[host.NodePluginsKey])
	if err != nil {
		r.cfg.Logger.Error("node plugin declarations unreadable; running none", "err", err)
		return sel
	}
	var labels map[string]string
	if n, ok, _ := nodes.GetByKey(r.cfg.NodeName); ok {
		labels = n.(*v1.Node).Labels
	} else {
		// Selectors need the labels: wait for the Node.
		return selection{}
	}
	return selectFor(decls, labels, r.cfg.Builtins, r.cfg.PluginDir)
}

// selectFor is the pure part of desired.
func selectFor(decls []host.NodePlugin, labels map[string]string, builtins host.BuiltinBinary, dir string) selection {
	sel := selection{skipped: map[string]string{}, refused: map[string]string{}}
	for _, d := range decls {
		if !d.Selects(labels) {
			sel.skipped[d.Name] = fmt.Sprintf("not run on this node: its labels do not match the node selector %v", d.NodeSelector)
			continue
		}
		sp, err := d.Spec(builtins, dir)
		if err != nil {
			sel.refused[d.Name] = err.Error()
			continue
		}
		sel.specs = append(sel.specs, sp)
	}
	return sel
}

// apply restarts the supervisor when the selected set changed.
func (r *runner) apply(ctx context.Context, sel selection) {
	for name, why := range sel.skipped {
		r.status.set(host.PluginStatus{Name: name, State: host.StateDisabled, Message: why, Since: time.Now()}, host.Spec{Name: name})
	}
	for name, why := range sel.refused {
		r.status.set(host.PluginStatus{Name: name, State: host.StateRefused, LastError: why, Since: time.Now()}, host.Spec{Name: name})
	}
	b, _ := json.Marshal(sel.specs)
	if string(b) == r.current {
		return
	}
	r.stop()
	r.current = string(b)
	if len(sel.specs) == 0 {
		return
	}
	specs := map[string]host.Spec{}
	for _, sp := range sel.specs {
		specs[sp.Name] = sp
	}
	sup, err := host.New(host.Config{
		APIEndpoint:    r.cfg.APIEndpoint,
		CAPEM:          r.cfg.CAPEM,
		NodeName:       r.cfg.NodeName,
		Members:        r.cfg.Members,
		Logger:         r.cfg.Logger,
		StoppedMessage: "stopped by its node's agent",
		SocketDir:      r.cfg.SocketDir,
		Credentials:    r.credentials,
		OnChange:       func(st host.PluginStatus) { r.status.set(st, specs[st.Name]) },
	}, sel.specs)
	if err != nil {
		r.cfg.Logger.Error("node plugins not started", "err", err)
		return
	}
	if err := sup.Start(ctx, 0); err != nil {
		r.cfg.Logger.Error("node plugins not started", "err", err)
		return
	}
	r.mu.Lock()
	r.sup = sup
	r.mu.Unlock()
	r.names = nil
	for _, sp := range sel.specs {
		r.names = append(r.names, sp.Name)
	}
	slices.Sort(r.names)
	r.cfg.Logger.Info("started node plugins", "plugins", r.names)
}

func (r *runner) stop() {
	r.mu.Lock()
	sup := r.sup
	r.sup = nil
	r.mu.Unlock()
	if sup != nil {
		sup.Stop()
		r.current = ""
	}
}

// metrics reads the running node plugins' metrics; none while the set is
// being replaced.
func (r *runner) metrics(ctx context.Context) []host.PluginMetrics {
	r.mu.Lock()
	sup := r.sup
	r.mu.Unlock()
	if sup == nil {
		return nil
	}
	return sup.Metrics(ctx)
}

// credentials hands a node plugin the node's own client certificate, and
// restarts it with the renewed one at two thirds of its remaining life
// (the agent renews its certificate before it expires).
func (r *runner) credentials(context.Context, string, uint64) (proto.Credentials, time.Time, error) {
	certPEM, keyPEM, err := r.cfg.NodeCredentials()
	if err != nil {
		return proto.Credentials{}, time.Time{}, err
	}
	block, _ := pem.Decode(certPEM)
	if block == nil {
		return proto.Credentials{}, time.Time{}, fmt.Errorf("the node's client certificate is not PEM")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return proto.Credentials{}, time.Time{}, fmt.Errorf("parsing the node's client certificate: %w", err)
	}
	now := time.Now()
	renew := now.Add(cert.NotAfter.Sub(now) * 2 / 3)
	return proto.Credentials{ClientCertPEM: certPEM, ClientKeyPEM: keyPEM}, renew, nil
}
