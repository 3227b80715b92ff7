package placement

import (
	"slices"
	"testing"

	v1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	storagelisters "k8s.io/client-go/listers/storage/v1"
	"k8s.io/utils/ptr"
)

func TestFilterVolumes(t *testing.T) {
	boundClaim := func(name, pv string) *v1.PersistentVolumeClaim {
		return &v1.PersistentVolumeClaim{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", Annotations: map[string]string{AnnBindCompleted: "yes"}},
			Spec:       v1.PersistentVolumeClaimSpec{VolumeName: pv},
		}
	}
	beta := &v1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "pv-beta", Labels: map[string]string{v1.LabelFailureDomainBetaZone: "z1"}}}
	zonal := &v1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "pv-zonal", Labels: map[string]string{v1.LabelTopologyZone: "z1__z3"}}}
	local := &v1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "pv-local"}, Spec: v1.PersistentVolumeSpec{
		NodeAffinity: &v1.VolumeNodeAffinity{Required: &v1.NodeSelector{NodeSelectorTerms: []v1.NodeSelectorTerm{{
			MatchExpressions: []v1.NodeSelectorRequirement{{Key: v1.LabelHostname, Operator: v1.NodeSelectorOpIn, Values: []string{"b"}}},
		}}}},
	}}
	wffc := &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "local"}, VolumeBindingMode: ptr.To(storagev1.VolumeBindingWaitForFirstConsumer)}
	immediate := &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "fast"}, VolumeBindingMode: ptr.To(storagev1.VolumeBindingImmediate)}
	claims := []any{
		boundClaim("zonal", "pv-zonal"), boundClaim("beta", "pv-beta"), boundClaim("local", "pv-local"), boundClaim("dangling", "pv-missing"),
		&v1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: "pending-immediate", Namespace: "ns"}, Spec: v1.PersistentVolumeClaimSpec{StorageClassName: ptr.To("fast")}},
		&v1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: "pending-wffc", Namespace: "ns"}, Spec: v1.PersistentVolumeClaimSpec{StorageClassName: ptr.To("local")}},
		&v1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: "binding", Namespace: "ns"}, Spec: v1.PersistentVolumeClaimSpec{VolumeName: "pv-zonal"}},
	}
	l := Listers{
		PVCs:           corelisters.NewPersistentVolumeClaimLister(indexer(claims...)),
		PVs:            corelisters.NewPersistentVolumeLister(indexer(zonal, beta, local)),
		StorageClasses: storagelisters.NewStorageClassLister(indexer(wffc, immediate)),
	}
	e := testEngine(Config{}, l)
	w := world([]*v1.Node{
		node("a", withLabels(v1.LabelTopologyZone, "z1")),
		node("b", withLabels(v1.LabelTopologyZone, "z2")),
		node("c"),
		node("d", withLabels(v1.LabelFailureDomainBetaZone, "z3")),
	})
	claim := func(name string) func(*v1.Pod) {
		return func(p *v1.Pod) {
			p.Spec.Volumes = append(p.Spec.Volumes, v1.Volume{Name: name, VolumeSource: v1.VolumeSource{
				PersistentVolumeClaim: &v1.PersistentVolumeClaimVolumeSource{ClaimName: name}}})
		}
	}
	tests := []struct {
		name     string
		pod      *v1.Pod
		want     []string
		rejected string
	}{
		{"no claims", pod("p"), []string{"a", "b", "c", "d"}, ""},
		// d carries only the beta zone label: a GA-labelled volume does
		// not match it (upstream maps beta volume labels to GA, not back).
		{"zonal volume: its zones, and nodes without zone labels", pod("p", claim("zonal")), []string{"a", "c"}, ""},
		{"beta-labelled volume matches GA-labelled nodes", pod("p", claim("beta")), []string{"a", "c"}, ""},
		{"local volume: its node", pod("p", claim("local")), []string{"b"}, ""},
		{"both", pod("p", claim("local"), claim("zonal")), nil, ""},
		{"missing claim", pod("p", claim("nope")), nil, `persistentvolumeclaim "nope" not found`},
		{"missing volume", pod("p", claim("dangling")), nil, `persistentvolume "pv-missing" not found`},
		{"unbound immediate claim", pod("p", claim("pending-immediate")), nil, reasonUnboundImmediate},
		{"binding in progress", pod("p", claim("binding")), nil, reasonUnboundImmediate},
		// The class has no provisioner and no volume fits: no node.
		{"claim waiting for its first consumer", pod("p", claim("pending-wffc")), nil, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := verdicts(t, e, w, tc.pod)
			if tc.rejected != "" {
				if got["*"] != tc.rejected {
					t.Fatalf("pre-check = %q, want %q", got["*"], tc.rejected)
				}
				return
			}
			if f := fits(t, e, w, tc.pod); !slices.Equal(f, tc.want) {
				t.Fatalf("fits %v, want %v (verdicts %v)", f, tc.want, got)
			}
		})
	}
	got := verdicts(t, e, w, pod("p", claim("zonal"), claim("local")))
	if got["a"] != reasonPVNodeAffinity || got["b"] != reasonVolumeZone {
		t.Fatalf("reasons %v, want a: %q, b: %q", got, reasonPVNodeAffinity, reasonVolumeZone)
	}
}

func spreadBy(key string, maxSkew int32, action v1.UnsatisfiableConstraintAction, selector ...string) func(*v1.Pod) {
	return func(p *v1.Pod) {
		p.Spec.TopologySpreadConstraints = append(p.Spec.TopologySpreadConstraints, v1.TopologySpreadConstraint{
			MaxSkew: maxSkew, TopologyKey: key, WhenUnsatisfiable: action,
			LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{selector[0]: selector[1]}},
		})
	}
}

func TestFilterTopologySpread(t *testing.T) {
	zone := v1.LabelTopologyZone
	nodes := []*v1.Node{
		node("a1", withLabels(zone, "a")), node("a2", withLabels(zone, "a")),
		node("b1", withLabels(zone, "b")),
		node("c1", withLabels(zone, "c"), withTaint("x", "", v1.TaintEffectNoSchedule)),
		node("nolabel"),
	}
	app := withPodLabels("app", "web")
	existing := []*v1.Pod{
		pod("w1", onNode("a1"), app), pod("w2", onNode("a2"), app), pod("w3", onNode("b1"), app),
		pod("other", onNode("b1"), withPodLabels("app", "db")),
	}
	e := testEngine(Config{}, Listers{})
	w := world(nodes, existing...)
	tests := []struct {
		name string
		pod  *v1.Pod
		want []string
	}{
		// zone counts: a=2, b=1, c=0 (c's node is tainted but the
		// default taint policy counts it) -> only c keeps skew <= 1.
		{"maxSkew 1 over zones", pod("p", app, spreadBy(zone, 1, v1.DoNotSchedule, "app", "web"),
			tolerate("x", v1.TolerationOpExists, "", "")), []string{"c1"}},
		{"maxSkew 2 over zones", pod("p", app, spreadBy(zone, 2, v1.DoNotSchedule, "app", "web")), []string{"b1"}},
		{"a pod the selector does not match adds no skew", pod("p", spreadBy(zone, 1, v1.DoNotSchedule, "app", "web")), []string{"b1"}},
		{"honouring taints drops zone c", pod("p", app, func(p *v1.Pod) {
			spreadBy(zone, 1, v1.DoNotSchedule, "app", "web")(p)
			p.Spec.TopologySpreadConstraints[0].NodeTaintsPolicy = ptr.To(v1.NodeInclusionPolicyHonor)
		}), []string{"b1"}},
		{"minDomains above the domain count treats the minimum as 0", pod("p", app, func(p *v1.Pod) {
			spreadBy(zone, 2, v1.DoNotSchedule, "app", "web")(p)
			p.Spec.TopologySpreadConstraints[0].MinDomains = ptr.To[int32](5)
		}), []string{"b1"}},
		{"soft constraints do not filter", pod("p", app, spreadBy(zone, 1, v1.ScheduleAnyway, "app", "web")), []string{"a1", "a2", "b1", "nolabel"}},
		{"hostname spread", pod("p", app, spreadBy(v1.LabelHostname, 1, v1.DoNotSchedule, "app", "web")), []string{"nolabel"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := fits(t, e, w, tc.pod); !slices.Equal(got, tc.want) {
				t.Fatalf("fits %v, want %v (verdicts %v)", got, tc.want, verdicts(t, e, w, tc.pod))
			}
		})
	}
	got := verdicts(t, e, w, pod("p", app, spreadBy(zone, 1, v1.DoNotSchedule, "app", "web")))
	if got["nolabel"] != reasonSpreadMissingLabel || got["a1"] != reasonSpreadNotMatch {
		t.Fatalf("reasons %v", got)
	}
}

func podAffinity(anti, required bool, key string, selector ...string) func(*v1.Pod) {
	return func(p *v1.Pod) {
		term := v1.PodAffinityTerm{TopologyKey: key, LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{selector[0]: selector[1]}}}
		if p.Spec.Affinity == nil {
			p.Spec.Affinity = &v1.Affinity{}
		}
		a := p.Spec.Affinity
		switch {
		case !anti && required:
			if a.PodAffinity == nil {
				a.PodAffinity = &v1.PodAffinity{}
			}
			a.PodAffinity.RequiredDuringSchedulingIgnoredDuringExecution = append(a.PodAffinity.RequiredDuringSchedulingIgnoredDuringExecution, term)
		case !anti:
			if a.PodAffinity == nil {
				a.PodAffinity = &v1.PodAffinity{}
			}
			a.PodAffinity.PreferredDuringSchedulingIgnoredDuringExecution = append(a.PodAffinity.PreferredDuringSchedulingIgnoredDuringExecution, v1.WeightedPodAffinityTerm{Weight: 10, PodAffinityTerm: term})
		case required:
			if a.PodAntiAffinity == nil {
				a.PodAntiAffinity = &v1.PodAntiAffinity{}
			}
			a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution = append(a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution, term)
		default:
			if a.PodAntiAffinity == nil {
				a.PodAntiAffinity = &v1.PodAntiAffinity{}
			}
			a.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution = append(a.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution, v1.WeightedPodAffinityTerm{Weight: 10, PodAffinityTerm: term})
		}
	}
}

func TestFilterInterPodAffinity(t *testing.T) {
	zone := v1.LabelTopologyZone
	nodes := []*v1.Node{
		node("a1", withLabels(zone, "a")), node("a2", withLabels(zone, "a")),
		node("b1", withLabels(zone, "b")), node("nozone"),
	}
	db := withPodLabels("app", "db")
	existing := []*v1.Pod{
		pod("db", onNode("a1"), db),
		pod("loner", onNode("b1"), withPodLabels("app", "loner"), podAffinity(true, true, v1.LabelHostname, "app", "web")),
	}
	e := testEngine(Config{}, Listers{})
	w := world(nodes, existing...)
	tests := []struct {
		name string
		pod  *v1.Pod
		want []string
	}{
		{"affinity to db by zone", pod("p", podAffinity(false, true, zone, "app", "db")), []string{"a1", "a2"}},
		{"affinity to db by host", pod("p", podAffinity(false, true, v1.LabelHostname, "app", "db")), []string{"a1"}},
		{"affinity to a missing group fails everywhere", pod("p", podAffinity(false, true, zone, "app", "cache")), nil},
		{"the first pod of a group with self-affinity goes anywhere with the key", pod("p", withPodLabels("app", "cache"),
			podAffinity(false, true, zone, "app", "cache")), []string{"a1", "a2", "b1"}},
		{"anti-affinity to db by zone", pod("p", podAffinity(true, true, zone, "app", "db")), []string{"b1", "nozone"}},
		{"existing pod's anti-affinity keeps web away", pod("p", withPodLabels("app", "web")), []string{"a1", "a2", "nozone"}},
		{"other namespaces do not count", pod("p", func(p *v1.Pod) { p.Namespace = "other" }, podAffinity(false, true, zone, "app", "db")), nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := fits(t, e, w, tc.pod); !slices.Equal(got, tc.want) {
				t.Fatalf("fits %v, want %v (verdicts %v)", got, tc.want, verdicts(t, e, w, tc.pod))
			}
		})
	}
	reasons := verdicts(t, e, w, pod("p", withPodLabels("app", "web"), podAffinity(true, true, zone, "app", "db")))
	if reasons["a1"] != reasonAntiAffinityNotMatch || reasons["b1"] != reasonExistingAntiAffinity {
		t.Fatalf("reasons %v", reasons)
	}
	if got := verdicts(t, e, w, pod("p", podAffinity(false, true, zone, "app", "cache")))["nozone"]; got != reasonAffinityNotMatch {
		t.Fatalf("reason %q, want %q", got, reasonAffinityNotMatch)
	}
}

func TestFilterInterPodAffinityNamespaceSelector(t *testing.T) {
	nss := corelisters.NewNamespaceLister(indexer(
		&v1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ns", Labels: map[string]string{"team": "x"}}},
		&v1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "prod", Labels: map[string]string{"env": "prod"}}},
	))
	e := testEngine(Config{}, Listers{Namespaces: nss})
	prodDB := pod("db", onNode("a"), withPodLabels("app", "db"), func(p *v1.Pod) { p.Namespace = "prod" })
	w := world([]*v1.Node{node("a"), node("b")}, prodDB)
	p := pod("p", podAffinity(false, true, v1.LabelHostname, "app", "db"), func(p *v1.Pod) {
		p.Spec.Affinity.PodAffinity.RequiredDuringSchedulingIgnoredDuringExecution[0].NamespaceSelector =
			&metav1.LabelSelector{MatchLabels: map[string]string{"env": "prod"}}
	})
	if got := fits(t, e, w, p); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("fits %v, want [a]: the selector reaches namespace prod", got)
	}
}
