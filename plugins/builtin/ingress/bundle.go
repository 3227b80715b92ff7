package ingress

import (
	"fmt"

	v1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
)

// Bundle is the data of the TLS bundle Secret: the certificate and key of
// every kubernetes.io/tls Secret that a TLS section of one of ings names,
// and nothing else. The leader part publishes it so that the nodes, which
// may read that one Secret only, never see another Secret of the cluster.
// problems name the sections whose Secret is missing or unusable.
func Bundle(ings []*networkingv1.Ingress, secret func(namespace, name string) *v1.Secret) (data map[string][]byte, problems []string) {
	data = map[string][]byte{}
	for _, ing := range ings {
		for _, tl := range ing.Spec.TLS {
			if tl.SecretName == "" {
				continue
			}
			k := bundleKey(ing.Namespace, tl.SecretName)
			if _, done := data[k+"."+v1.TLSCertKey]; done {
				continue
			}
			s := secret(ing.Namespace, tl.SecretName)
			switch {
			case s == nil:
				problems = append(problems, fmt.Sprintf("ingress %s/%s: tls secret %q not found", ing.Namespace, ing.Name, tl.SecretName))
			case s.Type != v1.SecretTypeTLS:
				problems = append(problems, fmt.Sprintf("ingress %s/%s: secret %q has type %q: create it with type %s", ing.Namespace, ing.Name, tl.SecretName, s.Type, v1.SecretTypeTLS))
			case len(s.Data[v1.TLSCertKey]) == 0 || len(s.Data[v1.TLSPrivateKeyKey]) == 0:
				problems = append(problems, fmt.Sprintf("ingress %s/%s: secret %q lacks %s or %s", ing.Namespace, ing.Name, tl.SecretName, v1.TLSCertKey, v1.TLSPrivateKeyKey))
			default:
				data[k+"."+v1.TLSCertKey] = s.Data[v1.TLSCertKey]
				data[k+"."+v1.TLSPrivateKeyKey] = s.Data[v1.TLSPrivateKeyKey]
			}
		}
	}
	return data, problems
}
