// Command filecloud is an example third-party cloud-provider plugin: a
// "cloud" whose instances and load balancers are described in a JSON file,
// served by sdk.ServeCloudProvider. It shows what an out-of-tree provider
// (an implementation of k8s.io/cloud-provider's cloudprovider.Interface)
// needs to run on Keelson: its main hands the provider to the SDK, which
// runs upstream's cloud-node, cloud-node-lifecycle and service controllers
// around it.
//
// The file is the cloud's API: it is read on every call, so editing it is
// what creating, stopping or deleting an instance is in a real cloud.
//
//	{
//	  "instances": [
//	    {"node": "a1", "id": "i-0a1", "type": "m1.small", "zone": "z1", "region": "r1",
//	     "addresses": [{"type": "InternalIP", "address": "10.0.0.5"}, {"type": "ExternalIP", "address": "203.0.113.5"}]}
//	  ],
//	  "loadBalancers": [{"service": "default/web", "ip": "203.0.113.80"}]
//	}
//
// Build it, checksum it, and list it in the server's configuration with the
// cloud-provider preset (and the built-in provider off):
//
//	go build -o /var/lib/keelson/plugins/filecloud ./examples/plugins/filecloud
//	keelson server --disable-plugin localcloud \
//	  --plugin filecloud=$(sha256sum /var/lib/keelson/plugins/filecloud | cut -d' ' -f1):cloud-provider \
//	  --plugin-config 'filecloud={"file":"/etc/filecloud/cloud.json"}'
//	keelson agent --cloud-provider=external ...
package main

import (
	"context"

	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	cloudprovider "k8s.io/cloud-provider"

	"github.com/keelson/keelson/plugins/sdk"
)

// Config is the plugin's configuration section.
type Config struct {
	// File is the cloud's description (JSON, see the package doc).
	File string `json:"file"`
}

func main() {
	sdk.ServeCloudProvider(sdk.Plugin{Name: "filecloud", Version: "0.1.0"}, newCloud, sdk.CloudOptions{})
}

// newCloud builds the provider from the plugin's configuration section.
func newCloud(_ context.Context, env sdk.Env, _ kubernetes.Interface, _ informers.SharedInformerFactory) (cloudprovider.Interface, error) {
	var cfg Config
	if err := sdk.DecodeConfig(env.Config, &cfg); err != nil {
		return nil, err
	}
	if cfg.File == "" {
		return nil, sdk.ConfigErrorf("file", "file: is empty; set it to the path of the cloud's JSON description")
	}
	c := &Cloud{path: cfg.File}
	if _, err := c.read(); err != nil {
		return nil, sdk.ConfigErrorf("file", "file: %v", err)
	}
	env.Logger.Info("file cloud ready", "file", cfg.File)
	return c, nil
}

// providerPrefix starts the provider IDs of the file's instances.
const providerPrefix = "filecloud://"
