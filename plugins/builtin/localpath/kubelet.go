package localpath

import (
	"context"
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

// nodeStorage removes volume directories on nodes.
type nodeStorage interface {
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
	if err := localstorage.CheckVolumeName(name); err != nil {
		return err
	}
	base, err := kubeletURL(node)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, base+localstorage.VolumeAPIPath(name), nil)
	if err != nil {
		return err
	}
	resp, err := k.client.Do(req)
	if err != nil {
		return fmt.Errorf("asking node %q to remove the directory of volume %s: %w", node.Name, name, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode/100 == 2 {
		return nil
	}
	return fmt.Errorf("node %q did not remove the directory of volume %s: %s: %s", node.Name, name, resp.Status, strings.TrimSpace(string(body)))
}
