package pods

import (
	"fmt"
	"sort"
	"strings"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/keelson/keelson/agent/downward"
	"github.com/keelson/keelson/agent/svcenv"
)

// envSources is where a container's environment comes from besides its
// spec: ConfigMaps and Secrets by name (nil, nil when absent), the
// namespace's services and the node's allocatable resources (the default
// of unset limits in resourceFieldRef).
type envSources struct {
	configMap   func(name string) (*v1.ConfigMap, error)
	secret      func(name string) (*v1.Secret, error)
	services    []*v1.Service // the pod's namespace's, plus kubernetes in default
	allocatable v1.ResourceList
	podIPs      []string
	hostIPs     []string
}

// configError is a problem in a pod's spec or its references that a retry
// only fixes once someone changes it (CreateContainerConfigError).
type configError struct{ msg string }

func (e configError) Error() string { return e.msg }

func configErrorf(format string, args ...any) error { return configError{fmt.Sprintf(format, args...)} }

// containerEnv resolves a container's environment as kubelet does: service
// variables first, then envFrom, then env (whose values may refer to earlier
// variables as $(NAME)).
func containerEnv(pod *v1.Pod, c *v1.Container, src envSources) ([]string, error) {
	vars := map[string]string{}
	var order []string
	set := func(k, v string) {
		if _, ok := vars[k]; !ok {
			order = append(order, k)
		}
		vars[k] = v
	}
	for _, v := range svcenv.FromServices(pod.Namespace, src.services, pod.Spec.EnableServiceLinks) {
		set(v.Name, v.Value)
	}
	for _, from := range c.EnvFrom {
		data, err := envFromData(from, src)
		if err != nil {
			return nil, err
		}
		keys := make([]string, 0, len(data))
		for k := range data {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		// Every key goes in under its prefix, as kubelet does: since
		// environment names were relaxed, "1-data-1" and "#@!data-1" are
		// valid. Upstream's API server rejects a prefix that would make
		// a name outside the relaxed rule (printable ASCII, no '='); such
		// a name cannot be passed on intact, so it is left out.
		for _, k := range keys {
			name := from.Prefix + k
			if len(validation.IsRelaxedEnvVarName(name)) > 0 {
				continue
			}
			set(name, data[k])
		}
	}
	for _, e := range c.Env {
		if e.ValueFrom == nil {
			set(e.Name, expand(e.Value, vars))
			continue
		}
		v, ok, err := envValueFrom(pod, c, e, src)
		if err != nil {
			return nil, err
		}
		if ok {
			set(e.Name, v)
		}
	}
	out := make([]string, 0, len(order))
	for _, k := range order {
		out = append(out, k+"="+vars[k])
	}
	return out, nil
}

func envFromData(from v1.EnvFromSource, src envSources) (map[string]string, error) {
	switch {
	case from.ConfigMapRef != nil:
		optional := from.ConfigMapRef.Optional != nil && *from.ConfigMapRef.Optional
		cm, err := src.configMap(from.ConfigMapRef.Name)
		if err != nil {
			return nil, err
		}
		if cm == nil {
			if optional {
				return nil, nil
			}
			return nil, configErrorf("configmap %q not found", from.ConfigMapRef.Name)
		}
		return cm.Data, nil
	case from.SecretRef != nil:
		optional := from.SecretRef.Optional != nil && *from.SecretRef.Optional
		s, err := src.secret(from.SecretRef.Name)
		if err != nil {
			return nil, err
		}
		if s == nil {
			if optional {
				return nil, nil
			}
			return nil, configErrorf("secret %q not found", from.SecretRef.Name)
		}
		data := make(map[string]string, len(s.Data))
		for k, v := range s.Data {
			data[k] = string(v)
		}
		return data, nil
	}
	return nil, nil
}

// envValueFrom resolves one valueFrom; ok is false for an optional
// reference that is absent (the variable is then not set).
func envValueFrom(pod *v1.Pod, c *v1.Container, e v1.EnvVar, src envSources) (string, bool, error) {
	vf := e.ValueFrom
	switch {
	case vf.FieldRef != nil:
		v, err := downward.Field(pod, vf.FieldRef.FieldPath, src.podIPs, src.hostIPs)
		if err != nil {
			return "", false, configError{err.Error()}
		}
		return v, true, nil
	case vf.ResourceFieldRef != nil:
		v, err := downward.Resource(pod, c, vf.ResourceFieldRef, src.allocatable)
		if err != nil {
			return "", false, configError{err.Error()}
		}
		return v, true, nil
	case vf.ConfigMapKeyRef != nil:
		ref := vf.ConfigMapKeyRef
		optional := ref.Optional != nil && *ref.Optional
		cm, err := src.configMap(ref.Name)
		if err != nil {
			return "", false, err
		}
		if cm == nil {
			if optional {
				return "", false, nil
			}
			return "", false, configErrorf("configmap %q not found", ref.Name)
		}
		v, ok := cm.Data[ref.Key]
		if !ok {
			if optional {
				return "", false, nil
			}
			return "", false, configErrorf("couldn't find key %s in ConfigMap %s/%s", ref.Key, pod.Namespace, ref.Name)
		}
		return v, true, nil
	case vf.SecretKeyRef != nil:
		ref := vf.SecretKeyRef
		optional := ref.Optional != nil && *ref.Optional
		s, err := src.secret(ref.Name)
		if err != nil {
			return "", false, err
		}
		if s == nil {
			if optional {
				return "", false, nil
			}
			return "", false, configErrorf("secret %q not found", ref.Name)
		}
		v, ok := s.Data[ref.Key]
		if !ok {
			if optional {
				return "", false, nil
			}
			return "", false, configErrorf("couldn't find key %s in Secret %s/%s", ref.Key, pod.Namespace, ref.Name)
		}
		return string(v), true, nil
	}
	return "", false, configErrorf("env %s: unsupported valueFrom", e.Name)
}

// expand replaces $(NAME) by a defined variable's value; $$ is a literal $,
// and an undefined reference stays as written (Kubernetes' rules).
func expand(s string, vars map[string]string) string {
	if !strings.Contains(s, "$") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 >= len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '(':
			end := strings.IndexByte(s[i+2:], ')')
			if end < 0 {
				b.WriteString(s[i:])
				return b.String()
			}
			name := s[i+2 : i+2+end]
			if v, ok := vars[name]; ok {
				b.WriteString(v)
			} else {
				b.WriteString(s[i : i+3+end])
			}
			i += 2 + end
		default:
			b.WriteByte('$')
		}
	}
	return b.String()
}
