package pods

import v1 "k8s.io/api/core/v1"

// SecretNames returns the names of the Secrets in its namespace that p
// uses: image pull secrets, environment variables of every container
// (init and ephemeral ones included), secret and projected volumes, and
// the secret references of volume plugins (CSI and the in-tree ones).
func SecretNames(p *v1.Pod) map[string]bool {
	out := map[string]bool{}
	add := func(name string) {
		if name != "" {
			out[name] = true
		}
	}
	addRef := func(ref *v1.LocalObjectReference) {
		if ref != nil {
			add(ref.Name)
		}
	}
	for _, s := range p.Spec.ImagePullSecrets {
		add(s.Name)
	}
	envs := func(from []v1.EnvFromSource, env []v1.EnvVar) {
		for _, e := range from {
			if e.SecretRef != nil {
				add(e.SecretRef.Name)
			}
		}
		for _, e := range env {
			if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
				add(e.ValueFrom.SecretKeyRef.Name)
			}
		}
	}
	for _, c := range p.Spec.InitContainers {
		envs(c.EnvFrom, c.Env)
	}
	for _, c := range p.Spec.Containers {
		envs(c.EnvFrom, c.Env)
	}
	for _, c := range p.Spec.EphemeralContainers {
		envs(c.EnvFrom, c.Env)
	}
	for i := range p.Spec.Volumes {
		volumeSecretNames(&p.Spec.Volumes[i].VolumeSource, add, addRef)
	}
	return out
}

func volumeSecretNames(v *v1.VolumeSource, add func(string), addRef func(*v1.LocalObjectReference)) {
	switch {
	case v.Secret != nil:
		add(v.Secret.SecretName)
	case v.Projected != nil:
		for _, src := range v.Projected.Sources {
			if src.Secret != nil {
				add(src.Secret.Name)
			}
		}
	case v.AzureFile != nil:
		add(v.AzureFile.SecretName)
	case v.CephFS != nil:
		addRef(v.CephFS.SecretRef)
	case v.Cinder != nil:
		addRef(v.Cinder.SecretRef)
	case v.FlexVolume != nil:
		addRef(v.FlexVolume.SecretRef)
	case v.ISCSI != nil:
		addRef(v.ISCSI.SecretRef)
	case v.RBD != nil:
		addRef(v.RBD.SecretRef)
	case v.ScaleIO != nil:
		addRef(v.ScaleIO.SecretRef)
	case v.StorageOS != nil:
		addRef(v.StorageOS.SecretRef)
	case v.CSI != nil:
		addRef(v.CSI.NodePublishSecretRef)
	}
}
