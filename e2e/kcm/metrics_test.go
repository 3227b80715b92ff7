package kcm

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"k8s.io/client-go/kubernetes"

	"github.com/keelson/keelson/e2e/harness"
	"github.com/keelson/keelson/plugins/builtin/resourcequota"
	"github.com/keelson/keelson/plugins/builtin/serviceaccount"
)

// testPluginMetrics: the leader's /metrics carries every running plugin's
// own metrics (client-go workqueues and requests, Go runtime), renamed
// keelson_plugin_* and labelled with the plugin, read through the host.
func testPluginMetrics(t *testing.T, srv *harness.Server) {
	client := kubernetes.NewForConfigOrDie(srv.RESTConfig(t))
	want := []string{
		fmt.Sprintf(`keelson_plugin_workqueue_adds_total{name="%s",plugin="%s"}`, resourcequota.Name, resourcequota.Name),
		fmt.Sprintf(`keelson_plugin_go_goroutines{plugin="%s"}`, serviceaccount.Name),
		`keelson_plugin_rest_client_requests_total{code="200",host=`,
	}
	harness.Eventually(t, waitTimeout, "plugin metrics on the server's /metrics", func() (bool, string) {
		body, err := client.RESTClient().Get().AbsPath("/metrics").DoRaw(context.Background())
		if err != nil {
			return false, err.Error()
		}
		for _, w := range want {
			if !strings.Contains(string(body), w) {
				return false, "no " + w
			}
		}
		return true, ""
	})
}
