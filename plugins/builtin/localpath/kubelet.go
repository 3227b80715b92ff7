package localpath

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/client-go/rest"

	"github.com/keelson/keelson/plugins/sdk/localstorage"
)

// nodeStorage makes, resizes and removes volume directories on nodes.
type nodeStorage interface {
	EnsureVolume(ctx context.Context, node *v1.Node, name string, capacity int64) (localstorage.VolumeState, error)
	RemoveVolume(ctx context.Context, node *v1.Node, name string) error
}

// kubeletStorage asks a node's agent through its kubelet API, with this
// plugin's own identity (which the agent authorizes for nodes/storage).
type kubeletStorage struct {
	client *http.Client
}

// requestTimeout bounds one call to an agent.
const requestTimeout = 30 * time.Second

func newKubeletStorage(cfg *rest.Config) (*kubeletStorage, error) {
	c := rest.CopyConfig(cfg)
	// The agents' serving certificates are checked against the cluster CA
	// for their own address, not the API server's name.
	c.TLSClientConfig.ServerName = ""
	rt, err := rest.TransportFor(c)
	if err != nil {
		return nil, fmt.Errorf("building the kubelet API client: %w", err)
	}
	return &kubeletStorage{client: &http.Client{Transport: rt, Timeout: requestTimeout}}, nil
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

func (k *kubeletStorage) RemoveVolume(ctx context.Context, node *v1.Node, name string) error {
	_, err := k.call(ctx, node, http.MethodDelete, name, nil, "remove")
	return err
}

// EnsureVolume has the node make the volume's directory (or raise its
// bound) with capacity bytes, and returns whether the node enforces it.
func (k *kubeletStorage) EnsureVolume(ctx context.Context, node *v1.Node, name string, capacity int64) (localstorage.VolumeState, error) {
	body, err := json.Marshal(localstorage.VolumeRequest{CapacityBytes: capacity})
	if err != nil {
		return localstorage.VolumeState{}, err
	}
	answer, err := k.call(ctx, node, http.MethodPut, name, body, "make")
	if err != nil {
		return localstorage.VolumeState{}, err
	}
	var state localstorage.VolumeState
	if err := json.Unmarshal(answer, &state); err != nil {
		return localstorage.VolumeState{}, fmt.Errorf("node %q answered the directory of volume %s with %q: %w", node.Name, name, answer, err)
	}
	return state, nil
}

// call sends method with body to the volume's path on the node's kubelet
// API and returns the answer's body; what (make, remove) names the call
// in errors.
func (k *kubeletStorage) call(ctx context.Context, node *v1.Node, method, name string, body []byte, what string) ([]byte, error) {
	if err := localstorage.CheckVolumeName(name); err != nil {
		return nil, err
	}
	base, err := kubeletURL(node)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, method, base+localstorage.VolumeAPIPath(name), bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := k.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("asking node %q to %s the directory of volume %s: %w", node.Name, what, name, err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode/100 == 2 {
		return answer, nil
	}
	return nil, fmt.Errorf("node %q did not %s the directory of volume %s: %s: %s", node.Name, what, name, resp.Status, strings.TrimSpace(string(answer)))
}
