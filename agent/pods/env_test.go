package pods

import (
	"errors"
	"slices"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

func TestContainerEnv(t *testing.T) {
	pod := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "prod", UID: "u-1", Labels: map[string]string{"app": "web"}},
		Spec:       v1.PodSpec{NodeName: "n1", ServiceAccountName: "sa", EnableServiceLinks: ptr.To(true)},
	}
	c := &v1.Container{
		Name: "app",
		Resources: v1.ResourceRequirements{
			Requests: v1.ResourceList{v1.ResourceCPU: resource.MustParse("250m")},
			Limits:   v1.ResourceList{v1.ResourceMemory: resource.MustParse("64Mi")},
		},
		EnvFrom: []v1.EnvFromSource{{ConfigMapRef: &v1.ConfigMapEnvSource{LocalObjectReference: v1.LocalObjectReference{Name: "cfg"}}, Prefix: "CFG_"}},
		Env: []v1.EnvVar{
			{Name: "POD", ValueFrom: &v1.EnvVarSource{FieldRef: &v1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
			{Name: "APP", ValueFrom: &v1.EnvVarSource{FieldRef: &v1.ObjectFieldSelector{FieldPath: "metadata.labels['app']"}}},
			{Name: "IP", ValueFrom: &v1.EnvVarSource{FieldRef: &v1.ObjectFieldSelector{FieldPath: "status.podIP"}}},
			{Name: "NODE", ValueFrom: &v1.EnvVarSource{FieldRef: &v1.ObjectFieldSelector{FieldPath: "spec.nodeName"}}},
			{Name: "CPU_M", ValueFrom: &v1.EnvVarSource{ResourceFieldRef: &v1.ResourceFieldSelector{Resource: "requests.cpu", Divisor: resource.MustParse("1m")}}},
			{Name: "MEM_MI", ValueFrom: &v1.EnvVarSource{ResourceFieldRef: &v1.ResourceFieldSelector{Resource: "limits.memory", Divisor: resource.MustParse("1Mi")}}},
			{Name: "CPU_LIMIT", ValueFrom: &v1.EnvVarSource{ResourceFieldRef: &v1.ResourceFieldSelector{Resource: "limits.cpu"}}},
			{Name: "PASS", ValueFrom: &v1.EnvVarSource{SecretKeyRef: &v1.SecretKeySelector{LocalObjectReference: v1.LocalObjectReference{Name: "db"}, Key: "password"}}},
			{Name: "MAYBE", ValueFrom: &v1.EnvVarSource{SecretKeyRef: &v1.SecretKeySelector{LocalObjectReference: v1.LocalObjectReference{Name: "gone"}, Key: "k", Optional: ptr.To(true)}}},
			{Name: "URL", Value: "http://$(POD):$(WEB_SERVICE_PORT)/$(UNDEFINED)/$$(POD)"},
		},
	}
	src := envSources{
		configMap: func(name string) (*v1.ConfigMap, error) {
			if name == "cfg" {
				return &v1.ConfigMap{Data: map[string]string{"mode": "fast"}}, nil
			}
			return nil, nil
		},
		secret: func(name string) (*v1.Secret, error) {
			if name == "db" {
				return &v1.Secret{Data: map[string][]byte{"password": []byte("s3cret")}}, nil
			}
			return nil, nil
		},
		services: []*v1.Service{
			{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "prod"}, Spec: v1.ServiceSpec{ClusterIP: "10.43.0.20", Ports: []v1.ServicePort{{Name: "http", Port: 8080, Protocol: v1.ProtocolTCP}}}},
			{ObjectMeta: metav1.ObjectMeta{Name: "other", Namespace: "dev"}, Spec: v1.ServiceSpec{ClusterIP: "10.43.0.30", Ports: []v1.ServicePort{{Port: 80}}}},
			{ObjectMeta: metav1.ObjectMeta{Name: "kubernetes", Namespace: "default"}, Spec: v1.ServiceSpec{ClusterIP: "10.43.0.1", Ports: []v1.ServicePort{{Name: "https", Port: 443, Protocol: v1.ProtocolTCP}}}},
		},
		allocatable: v1.ResourceList{v1.ResourceCPU: resource.MustParse("2")},
		podIPs:      []string{"10.244.1.5"},
		hostIPs:     []string{"192.0.2.1"},
	}
	env, err := containerEnv(pod, c, src)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"POD=web", "APP=web", "IP=10.244.1.5", "NODE=n1", "CPU_M=250", "MEM_MI=64", "CPU_LIMIT=2", "PASS=s3cret",
		"CFG_mode=fast", "URL=http://web:8080/$(UNDEFINED)/$(POD)",
		"WEB_SERVICE_HOST=10.43.0.20", "WEB_PORT_8080_TCP_ADDR=10.43.0.20", "KUBERNETES_SERVICE_HOST=10.43.0.1", "KUBERNETES_SERVICE_PORT_HTTPS=443",
	}
	for _, w := range want {
		if !slices.Contains(env, w) {
			t.Errorf("env lacks %s: %v", w, env)
		}
	}
	for _, kv := range env {
		if kv == "MAYBE=" || kv[:min(len(kv), 6)] == "OTHER_" {
			t.Errorf("unexpected %s", kv)
		}
	}
	// Without service links, only the kubernetes service's variables.
	pod.Spec.EnableServiceLinks = ptr.To(false)
	env, _ = containerEnv(pod, &v1.Container{Name: "app"}, src)
	if slices.Contains(env, "WEB_SERVICE_HOST=10.43.0.20") || !slices.Contains(env, "KUBERNETES_SERVICE_HOST=10.43.0.1") {
		t.Errorf("enableServiceLinks=false: %v", env)
	}
	// A missing required key is a configuration error.
	bad := &v1.Container{Name: "app", Env: []v1.EnvVar{{Name: "X", ValueFrom: &v1.EnvVarSource{ConfigMapKeyRef: &v1.ConfigMapKeySelector{LocalObjectReference: v1.LocalObjectReference{Name: "cfg"}, Key: "nope"}}}}}
	var ce configError
	if _, err := containerEnv(pod, bad, src); !errors.As(err, &ce) {
		t.Errorf("missing key: %v, want a configuration error", err)
	}
}

func TestExpand(t *testing.T) {
	vars := map[string]string{"A": "1", "B": "two"}
	for in, want := range map[string]string{
		"$(A)-$(B)":   "1-two",
		"$$(A)":       "$(A)",
		"$(C)":        "$(C)",
		"cost $5":     "cost $5",
		"open $(A":    "open $(A",
		"trailing $":  "trailing $",
		"no vars":     "no vars",
		"$(A)$(A)$$$": "11$$",
	} {
		if got := expand(in, vars); got != want {
			t.Errorf("expand(%q) = %q, want %q", in, got, want)
		}
	}
}

// The ConfigMap and Secret "environment variable names with various
// prefixes" specs: names that are not shell identifiers reach the
// container, as kubelet passes them.
func TestContainerEnvFromKeepsEveryPrefixedName(t *testing.T) {
	pod := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns"}, Spec: v1.PodSpec{EnableServiceLinks: ptr.To(false)}}
	ref := func(prefix string) v1.EnvFromSource {
		return v1.EnvFromSource{Prefix: prefix, ConfigMapRef: &v1.ConfigMapEnvSource{LocalObjectReference: v1.LocalObjectReference{Name: "cfg"}}}
	}
	c := &v1.Container{Name: "env-test", EnvFrom: []v1.EnvFromSource{ref(""), ref("1-"), ref("$_-"), ref("ABC_"), ref("#@!"), ref("a=b-"), ref("\x01"),
		{Prefix: "p-", SecretRef: &v1.SecretEnvSource{LocalObjectReference: v1.LocalObjectReference{Name: "s"}}}}}
	src := envSources{
		configMap: func(string) (*v1.ConfigMap, error) {
			return &v1.ConfigMap{Data: map[string]string{"data-1": "value-1"}}, nil
		},
		secret: func(string) (*v1.Secret, error) {
			return &v1.Secret{Data: map[string][]byte{"data-1": []byte("value-1")}}, nil
		},
	}
	env, err := containerEnv(pod, c, src)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"data-1=value-1", "1-data-1=value-1", "$_-data-1=value-1", "ABC_data-1=value-1", "#@!data-1=value-1", "p-data-1=value-1"} {
		if !slices.Contains(env, w) {
			t.Errorf("env lacks %s: %v", w, env)
		}
	}
	for _, kv := range env {
		if strings.HasPrefix(kv, "a=") || strings.HasPrefix(kv, "\x01") {
			t.Errorf("env has %q, whose name is not a valid environment name", kv)
		}
	}
}
