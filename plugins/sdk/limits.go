package sdk

import "k8s.io/client-go/rest"

// ClientLimits are a plugin's client-side limits on API requests, as
// kube-controller-manager's --kube-api-qps and --kube-api-burst; embed it in
// a plugin's Config to offer the two keys. Zero keeps the SDK's (50
// requests/s, bursts of 100).
type ClientLimits struct {
	KubeAPIQPS   float32 `json:"kubeAPIQPS"`
	KubeAPIBurst int     `json:"kubeAPIBurst"`
}

// Validate checks the limits; its errors are ConfigErrors naming the key.
func (l ClientLimits) Validate() error {
	if l.KubeAPIQPS < 0 {
		return ConfigErrorf("kubeAPIQPS", "kubeAPIQPS is %g: set a positive rate, or leave it out for the default", l.KubeAPIQPS)
	}
	if l.KubeAPIBurst < 0 {
		return ConfigErrorf("kubeAPIBurst", "kubeAPIBurst is %d: set a positive burst, or leave it out for the default", l.KubeAPIBurst)
	}
	return nil
}

// Apply returns a copy of c with the limits set.
func (l ClientLimits) Apply(c *rest.Config) *rest.Config {
	c = rest.CopyConfig(c)
	if l.KubeAPIQPS > 0 {
		c.QPS = l.KubeAPIQPS
	}
	if l.KubeAPIBurst > 0 {
		c.Burst = l.KubeAPIBurst
	}
	return c
}
