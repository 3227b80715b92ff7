package localpath

import (
	"context"
	"encoding/pem"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
)

// TestKubeletStorage: the DELETE reaches the node's kubelet API at its
// InternalIP and port, over TLS checked against the cluster CA, and the
// agent's refusal comes back as an error naming it.
func TestKubeletStorage(t *testing.T) {
	var got []string
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r.Method+" "+r.URL.Path)
		if strings.HasSuffix(r.URL.Path, "/busy") {
			http.Error(w, "volume busy is in use by pod ns/web", http.StatusConflict)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	host, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	p, _ := strconv.Atoi(port)
	node := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}, Status: v1.NodeStatus{
		Addresses:       []v1.NodeAddress{{Type: v1.NodeExternalIP, Address: "192.0.2.1"}, {Type: v1.NodeInternalIP, Address: host}},
		DaemonEndpoints: v1.NodeDaemonEndpoints{KubeletEndpoint: v1.DaemonEndpoint{Port: int32(p)}},
	}}
	// ServerName names the API server; it must not be what the agent's
	// certificate is checked against.
	k, err := newKubeletStorage(&rest.Config{Host: "https://api.invalid", TLSClientConfig: rest.TLSClientConfig{CAData: ca, ServerName: "kubernetes"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := k.RemoveVolume(context.Background(), node, "pvc-1"); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] != "DELETE /storage/local-path/pvc-1" {
		t.Errorf("requests %v", got)
	}
	if err := k.RemoveVolume(context.Background(), node, "busy"); err == nil || !strings.Contains(err.Error(), "in use by pod ns/web") {
		t.Errorf("refusal came back as %v", err)
	}
	if err := k.RemoveVolume(context.Background(), node, "../etc"); err == nil {
		t.Error("a path was sent as a volume name")
	}
}
