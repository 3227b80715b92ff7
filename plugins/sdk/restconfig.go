package sdk

import (
	"fmt"

	"k8s.io/client-go/rest"

	"github.com/keelson/keelson/plugins/proto"
)

// restConfig turns the host's Configuration into a client-go config that
// authenticates as the plugin. Protobuf is preferred on the wire: every
// plugin holds its own caches, and protobuf decodes with less garbage.
func restConfig(c proto.Configuration, name, version string) *rest.Config {
	return &rest.Config{
		Host:        c.APIEndpoint,
		BearerToken: c.Credentials.BearerToken,
		TLSClientConfig: rest.TLSClientConfig{
			CAData:   c.CAPEM,
			CertData: c.Credentials.ClientCertPEM,
			KeyData:  c.Credentials.ClientKeyPEM,
		},
		UserAgent: fmt.Sprintf("keelson-plugin-%s/%s", name, version),
		ContentConfig: rest.ContentConfig{
			ContentType:        "application/vnd.kubernetes.protobuf",
			AcceptContentTypes: "application/vnd.kubernetes.protobuf,application/json",
		},
		// client-go's defaults (5 QPS, burst 10) starve a controller that
		// resyncs hundreds of objects.
		QPS:   50,
		Burst: 100,
	}
}
