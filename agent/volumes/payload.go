package volumes

import (
	"context"
	"fmt"
	"os"
	"path"
	"sort"

	"github.com/keelson/keelson/agent/downward"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// defaultMode is the files' mode when the volume sets none (the API server
// defaults it to 0644 already).
const defaultMode = 0o644

func modeOf(m *int32, fallback os.FileMode) os.FileMode {
	if m != nil {
		return os.FileMode(*m) & os.ModePerm
	}
	return fallback
}

// keyedPayload lays out data (key -> bytes) with items (key -> path), or
// every key under its own name without items. A listed key that is absent
// is an error unless the source is optional.
func keyedPayload(kind, name string, data map[string][]byte, items []v1.KeyToPath, mode os.FileMode, optional bool) (map[string]File, error) {
	out := map[string]File{}
	if len(items) == 0 {
		for k, v := range data {
			out[k] = File{Data: v, Mode: mode}
		}
		return out, nil
	}
	for _, it := range items {
		v, ok := data[it.Key]
		if !ok {
			if optional {
				continue
			}
			return nil, fmt.Errorf("configured to use key %s of %s %s, which does not exist", it.Key, kind, name)
		}
		out[path.Clean(it.Path)] = File{Data: v, Mode: modeOf(it.Mode, mode)}
	}
	return out, nil
}

func (m *Manager) configMapPayload(ctx context.Context, ns, name string, items []v1.KeyToPath, mode *int32, optional *bool) (map[string]File, error) {
	opt := optional != nil && *optional
	cm, err := m.client.CoreV1().ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
	if notFound(err) && opt {
		return map[string]File{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("configmap %s/%s: %w", ns, name, err)
	}
	data := make(map[string][]byte, len(cm.Data)+len(cm.BinaryData))
	for k, v := range cm.Data {
		data[k] = []byte(v)
	}
	for k, v := range cm.BinaryData {
		data[k] = v
	}
	return keyedPayload("configmap", ns+"/"+name, data, items, modeOf(mode, defaultMode), opt)
}

func (m *Manager) secretPayload(ctx context.Context, ns, name string, items []v1.KeyToPath, mode *int32, optional *bool) (map[string]File, error) {
	opt := optional != nil && *optional
	s, err := m.client.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
	if notFound(err) && opt {
		return map[string]File{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("secret %s/%s: %w", ns, name, err)
	}
	return keyedPayload("secret", ns+"/"+name, s.Data, items, modeOf(mode, defaultMode), opt)
}

func downwardPayload(pod *v1.Pod, items []v1.DownwardAPIVolumeFile, mode *int32, env Env) (map[string]File, error) {
	out := map[string]File{}
	for _, it := range items {
		var v string
		var err error
		switch {
		case it.FieldRef != nil:
			v, err = downward.Field(pod, it.FieldRef.FieldPath, env.PodIPs, env.HostIPs)
		case it.ResourceFieldRef != nil:
			v, err = downward.Resource(pod, nil, it.ResourceFieldRef, env.Allocatable)
		default:
			err = fmt.Errorf("item %s has no fieldRef or resourceFieldRef", it.Path)
		}
		if err != nil {
			return nil, fmt.Errorf("downwardAPI item %s: %w", it.Path, err)
		}
		out[path.Clean(it.Path)] = File{Data: []byte(v), Mode: modeOf(it.Mode, modeOf(mode, defaultMode))}
	}
	return out, nil
}

func (m *Manager) projectedPayload(ctx context.Context, pod *v1.Pod, volume string, p *v1.ProjectedVolumeSource, env Env) (map[string]File, error) {
	mode := modeOf(p.DefaultMode, defaultMode)
	out := map[string]File{}
	merge := func(part map[string]File) {
		keys := make([]string, 0, len(part))
		for k := range part {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			out[k] = part[k]
		}
	}
	for i, s := range p.Sources {
		switch {
		case s.ConfigMap != nil:
			part, err := m.configMapPayload(ctx, pod.Namespace, s.ConfigMap.Name, s.ConfigMap.Items, int32Ptr(mode), s.ConfigMap.Optional)
			if err != nil {
				return nil, err
			}
			merge(part)
		case s.Secret != nil:
			part, err := m.secretPayload(ctx, pod.Namespace, s.Secret.Name, s.Secret.Items, int32Ptr(mode), s.Secret.Optional)
			if err != nil {
				return nil, err
			}
			merge(part)
		case s.DownwardAPI != nil:
			part, err := downwardPayload(pod, s.DownwardAPI.Items, int32Ptr(mode), env)
			if err != nil {
				return nil, err
			}
			merge(part)
		case s.ServiceAccountToken != nil:
			tok, err := m.serviceAccountToken(ctx, pod, s.ServiceAccountToken)
			if err != nil {
				return nil, err
			}
			// The token is readable by the pod's user only when it can be
			// told apart; kubelet narrows to 0600 with a runAsUser.
			tmode := mode
			if p.DefaultMode == nil {
				tmode = defaultMode
			}
			out[path.Clean(s.ServiceAccountToken.Path)] = File{Data: []byte(tok), Mode: tmode}
		case s.ClusterTrustBundle != nil:
			anchors, err := m.trustBundlePayload(ctx, s.ClusterTrustBundle)
			if err != nil {
				return nil, err
			}
			out[path.Clean(s.ClusterTrustBundle.Path)] = File{Data: anchors, Mode: mode}
		case s.PodCertificate != nil:
			key, chain, err := m.podCertificate(ctx, pod, podCertKey(pod, volume, i), s.PodCertificate, env)
			if err != nil {
				return nil, err
			}
			fsGroup := pod.Spec.SecurityContext != nil && pod.Spec.SecurityContext.FSGroup != nil
			merge(podCertificateFiles(s.PodCertificate, key, chain, mode, fsGroup))
		default:
			return nil, fmt.Errorf("projected volume source not supported (configMap, secret, downwardAPI, serviceAccountToken, clusterTrustBundle and podCertificate are)")
		}
	}
	return out, nil
}

func int32Ptr(m os.FileMode) *int32 {
	v := int32(m)
	return &v
}
