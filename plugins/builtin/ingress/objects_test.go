package ingress

import (
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

func node(name, ip string, ready bool, labels map[string]string) *v1.Node {
	status := v1.ConditionFalse
	if ready {
		status = v1.ConditionTrue
	}
	return &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}, Status: v1.NodeStatus{
		Addresses:  []v1.NodeAddress{{Type: v1.NodeHostName, Address: name}, {Type: v1.NodeInternalIP, Address: ip}},
		Conditions: []v1.NodeCondition{{Type: v1.NodeReady, Status: status}}}}
}

func TestDesiredSliceListsDataPlaneNodes(t *testing.T) {
	cfg := DefaultConfig()
	cfg.HTTPPort, cfg.NodeSelector = 8080, map[string]string{"edge": "yes"}
	edge := map[string]string{"edge": "yes"}
	s := desiredSlice(cfg, []*v1.Node{
		node("b", "10.0.0.2", false, edge), node("a", "10.0.0.1", true, edge),
		node("c", "10.0.0.3", true, nil), node("v6", "fd00::1", true, edge),
	})
	var got []string
	for _, ep := range s.Endpoints {
		got = append(got, *ep.NodeName+"="+ep.Addresses[0]+"/"+map[bool]string{true: "ready", false: "notready"}[*ep.Conditions.Ready])
	}
	if strings.Join(got, " ") != "a=10.0.0.1/ready b=10.0.0.2/notready" {
		t.Errorf("endpoints %v; want the selected IPv4 nodes, sorted, ready as their Node", got)
	}
	if *s.Ports[0].Port != 8080 || *s.Ports[1].Port != 443 {
		t.Errorf("ports %v; want httpPort and httpsPort", s.Ports)
	}
	if svc := desiredService(cfg); !portsMatch(svc.Spec.Ports, cfg) || portsMatch(svc.Spec.Ports, DefaultConfig()) {
		t.Error("portsMatch does not follow httpPort")
	}
}

func TestDecodeConfig(t *testing.T) {
	for raw, wantErr := range map[string]string{
		``: "",
		`{"httpPort": 8080, "httpsPort": 8443, "bindAddress": "10.0.0.1"}`: "",
		`{"httpPort": 0}`:                   "httpPort is 0",
		`{"httpsPort": 80}`:                 "httpsPort equals httpPort",
		`{"bindAddress": "eth0"}`:           `bindAddress "eth0" is not an IP address`,
		`{"gogc": 100, "heapLimit": "1Gi"}`: "",
		`{"gogc": 5}`:                       "gogc is 5: set a percent between 10 and 10000",
		`{"gogc": 20000}`:                   "gogc is 20000",
		`{"heapLimit": "lots"}`:             `heapLimit "lots" is not a quantity`,
		`{"heapLimit": "1Mi"}`:              "heapLimit 1Mi is below 16Mi",
		`{"heapLimit": 128}`:                "heapLimit",
	} {
		_, err := decodeConfig([]byte(raw))
		if (wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), wantErr)) {
			t.Errorf("config %s: %v, want %q", raw, err, wantErr)
		}
	}
}

func TestIngressStatusFromService(t *testing.T) {
	svc := &v1.Service{Status: v1.ServiceStatus{LoadBalancer: v1.LoadBalancerStatus{Ingress: []v1.LoadBalancerIngress{{IP: "192.0.2.1"}, {Hostname: "lb.example"}}}}}
	st := ingressStatus(svc)
	if len(st.Ingress) != 2 || st.Ingress[0].IP != "192.0.2.1" || st.Ingress[1].Hostname != "lb.example" {
		t.Errorf("status %v", st)
	}
	if len(ingressStatus(nil).Ingress) != 0 {
		t.Error("no Service: want an empty status")
	}
}

// The objects the leader creates must pass the API server's validation of
// label values.
func TestOwnObjectsHaveValidLabels(t *testing.T) {
	cfg := DefaultConfig()
	for what, labels := range map[string]map[string]string{
		"class": desiredClass().Labels, "service": desiredService(cfg).Labels, "slice": desiredSlice(cfg, nil).Labels,
	} {
		for k, v := range labels {
			if errs := validation.IsValidLabelValue(v); len(errs) > 0 {
				t.Errorf("%s label %s=%s: %v", what, k, v, errs)
			}
		}
	}
}
