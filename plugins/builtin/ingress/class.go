package ingress

import (
	networkingv1 "k8s.io/api/networking/v1"
)

// Ours reports whether the plugin serves ing, given every IngressClass:
// spec.ingressClassName naming a class of our controller; else the
// deprecated kubernetes.io/ingress.class annotation naming one (or
// "keelson"); else, with neither, a default class being ours. A class
// that does not exist serves nothing.
func Ours(ing *networkingv1.Ingress, classes []*networkingv1.IngressClass) bool {
	if n := ing.Spec.IngressClassName; n != nil {
		return classOurs(*n, classes)
	}
	if n, ok := ing.Annotations[annotationClass]; ok {
		return n == ClassName || classOurs(n, classes)
	}
	for _, c := range classes {
		if c.Annotations[annotationDefaultClass] == "true" && c.Spec.Controller == ControllerName {
			return true
		}
	}
	return false
}

func classOurs(name string, classes []*networkingv1.IngressClass) bool {
	for _, c := range classes {
		if c.Name == name {
			return c.Spec.Controller == ControllerName
		}
	}
	return false
}
