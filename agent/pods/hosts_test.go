package pods

import (
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

func TestHostsFile(t *testing.T) {
	aliases := []v1.HostAlias{
		{IP: "127.0.0.1", Hostnames: []string{"foo.local", "bar.local"}},
		{IP: "10.1.2.3", Hostnames: []string{"foo.remote", "bar.remote"}},
	}
	cases := []struct {
		name, hostname, domain string
		aliases                []v1.HostAlias
		want                   string
	}{
		{"plain", "nginx", "", nil, `# Kubernetes-managed hosts file.
127.0.0.1	localhost
::1	localhost ip6-localhost ip6-loopback
fe00::0	ip6-localnet
fe00::0	ip6-mcastprefix
fe00::1	ip6-allnodes
fe00::2	ip6-allrouters
10.244.2.50	nginx
`},
		{"host aliases, one line per alias as kubelet writes it", "hostaliases-pod", "", aliases, `# Kubernetes-managed hosts file.
127.0.0.1	localhost
::1	localhost ip6-localhost ip6-loopback
fe00::0	ip6-localnet
fe00::0	ip6-mcastprefix
fe00::1	ip6-allnodes
fe00::2	ip6-allrouters
10.244.2.50	hostaliases-pod
# Entries added by HostAliases.
127.0.0.1	foo.local	bar.local
10.1.2.3	foo.remote	bar.remote
`},
		{"subdomain", "web-0", "web.prod.svc.cluster.local", nil, `# Kubernetes-managed hosts file.
127.0.0.1	localhost
::1	localhost ip6-localhost ip6-loopback
fe00::0	ip6-localnet
fe00::0	ip6-mcastprefix
fe00::1	ip6-allnodes
fe00::2	ip6-allrouters
10.244.2.50	web-0.web.prod.svc.cluster.local	web-0
`},
	}
	for _, tc := range cases {
		if got := string(hostsFile([]string{"10.244.2.50"}, tc.hostname, tc.domain, tc.aliases)); got != tc.want {
			t.Errorf("%s:\n%s\nwant:\n%s", tc.name, got, tc.want)
		}
	}
}

func TestPodHostname(t *testing.T) {
	long := "a-very-long-pod-name-that-goes-on-and-on-beyond-sixty-three-chars-x"
	cases := []struct {
		pod          v1.Pod
		host, domain string
	}{
		{v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "ns"}}, "web", ""},
		{v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "ns"}, Spec: v1.PodSpec{Hostname: "h", Subdomain: "s"}}, "h", "s.ns.svc.cluster.local"},
		{v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: long, Namespace: "ns"}}, long[:63], ""},
	}
	for _, tc := range cases {
		h, d, _ := podHostname(&tc.pod, "cluster.local")
		if h != tc.host || d != tc.domain {
			t.Errorf("%s: %q %q, want %q %q", tc.pod.Name, h, d, tc.host, tc.domain)
		}
	}
	fqdn := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "ns"}, Spec: v1.PodSpec{Hostname: "h", Subdomain: "s", SetHostnameAsFQDN: ptr.To(true)}}
	if h, err := containerHostname(fqdn, "cluster.local"); err != nil || h != "h.s.ns.svc.cluster.local" {
		t.Errorf("setHostnameAsFQDN: %q %v", h, err)
	}
}

func TestResolvConf(t *testing.T) {
	host := []byte("# the node's\nnameserver 192.0.2.53\nsearch corp.example\noptions edns0\n")
	pod := func(policy v1.DNSPolicy, hostNet bool, cfg *v1.PodDNSConfig) *v1.Pod {
		return &v1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "prod"}, Spec: v1.PodSpec{DNSPolicy: policy, HostNetwork: hostNet, DNSConfig: cfg}}
	}
	cases := []struct {
		name string
		pod  *v1.Pod
		dns  []string
		want string
	}{
		{"cluster first", pod(v1.DNSClusterFirst, false, nil), []string{"10.43.0.10"},
			"search prod.svc.cluster.local svc.cluster.local cluster.local corp.example\nnameserver 10.43.0.10\noptions ndots:5\n"},
		{"cluster first without cluster DNS falls back to the node's", pod(v1.DNSClusterFirst, false, nil), nil,
			"search corp.example\nnameserver 192.0.2.53\noptions edns0\n"},
		{"host network uses the node's", pod(v1.DNSClusterFirst, true, nil), []string{"10.43.0.10"},
			"search corp.example\nnameserver 192.0.2.53\noptions edns0\n"},
		{"cluster first with host net", pod(v1.DNSClusterFirstWithHostNet, true, nil), []string{"10.43.0.10"},
			"search prod.svc.cluster.local svc.cluster.local cluster.local corp.example\nnameserver 10.43.0.10\noptions ndots:5\n"},
		{"none with config", pod(v1.DNSNone, false, &v1.PodDNSConfig{Nameservers: []string{"1.1.1.1"}, Searches: []string{"a.example"}, Options: []v1.PodDNSConfigOption{{Name: "ndots", Value: ptr.To("2")}}}), nil,
			"search a.example\nnameserver 1.1.1.1\noptions ndots:2\n"},
		{"config merges", pod(v1.DNSClusterFirst, false, &v1.PodDNSConfig{Options: []v1.PodDNSConfigOption{{Name: "ndots", Value: ptr.To("1")}, {Name: "rotate"}}}), []string{"10.43.0.10"},
			"search prod.svc.cluster.local svc.cluster.local cluster.local corp.example\nnameserver 10.43.0.10\noptions ndots:1 rotate\n"},
	}
	for _, tc := range cases {
		if got := string(resolvConf(tc.pod, host, tc.dns, "cluster.local")); got != tc.want {
			t.Errorf("%s:\n%s\nwant:\n%s", tc.name, got, tc.want)
		}
	}
}

func TestBackoffIsKubelets(t *testing.T) {
	clock := clockwork.NewFakeClock()
	b := newBackoff(clock, backoffInitial, backoffMax)
	key := "pod/app"
	// Crash, restart at once; every further crash waits twice as long,
	// up to five minutes.
	var waits []time.Duration
	for i := 0; i < 7; i++ {
		failed := clock.Now()
		w := b.wait(key, failed)
		waits = append(waits, w)
		clock.Advance(w)
		b.next(key, failed)
		clock.Advance(time.Second) // runs a second, crashes again
	}
	want := []time.Duration{0, 10 * time.Second, 20 * time.Second, 40 * time.Second, 80 * time.Second, 160 * time.Second, 300 * time.Second}
	for i := range want {
		if waits[i] != want[i] {
			t.Fatalf("waits %v, want %v", waits, want)
		}
	}
	// Ten minutes of running resets it.
	clock.Advance(11 * time.Minute)
	if w := b.wait(key, clock.Now()); w != 0 {
		t.Errorf("after ten minutes of running: wait %s, want a restart at once", w)
	}
	b.next(key, clock.Now())
	if d := b.delay(key); d != backoffInitial {
		t.Errorf("delay after the reset %s, want %s", d, backoffInitial)
	}
}
