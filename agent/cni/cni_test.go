package cni

import (
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"os"
	"testing"

	"github.com/keelson/keelson/internal/testnet"
)

func newTestNetwork(t *testing.T) (*Network, string) {
	t.Helper()
	if os.Getuid() != 0 {
		t.Skip("needs root to create network namespaces")
	}
	if _, err := os.Stat("/usr/lib/cni/bridge"); err != nil {
		t.Skip("containernetworking-plugins is not installed")
	}
	bridge := testnet.BridgeName()
	t.Cleanup(func() {
		if err := testnet.DeleteLink(bridge); err != nil {
			t.Error(err)
		}
	})
	cidr, err := testnet.PodCIDR()
	if err != nil {
		t.Fatal(err)
	}
	n, err := New(Options{BinDir: "/usr/lib/cni", Dir: t.TempDir(), Bridge: bridge})
	if err != nil {
		t.Fatal(err)
	}
	return n, cidr
}

func TestSetupAndTeardown(t *testing.T) {
	n, cidr := newTestNetwork(t)
	ctx := context.Background()
	pod := Pod{Namespace: "default", Name: "web", UID: "0f4c7e0e-1c4b-4b4e-9a53-cd0c7b2f2a11"}
	if _, _, err := n.Setup(ctx, pod, nil); err != ErrNoPodCIDR {
		t.Fatalf("setup before a pod CIDR: %v, want ErrNoPodCIDR", err)
	}
	if err := n.SetPodCIDR(cidr); err != nil {
		t.Fatal(err)
	}
	path, ips, err := n.Setup(ctx, pod, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(ips) != 1 {
		t.Fatalf("pod IPs %v for one pod CIDR", ips)
	}
	ip := ips[0]
	t.Cleanup(func() { n.Teardown(context.Background(), pod) })
	_, subnet, _ := net.ParseCIDR(cidr)
	if !subnet.Contains(ip) {
		t.Fatalf("pod IP %s not in %s", ip, cidr)
	}
	// Set up again: the same namespace and address.
	path2, ips2, err := n.Setup(ctx, pod, nil)
	if err != nil || path2 != path || len(ips2) != 1 || !ips2[0].Equal(ip) {
		t.Fatalf("second setup: %s %v %v, want %s %s", path2, ips2, err, path, ip)
	}
	// Inside the namespace: lo is up and eth0 has the address.
	err = InNetNS(path, func() error {
		ifs, err := net.Interfaces()
		if err != nil {
			return err
		}
		found := map[string]bool{}
		for _, i := range ifs {
			addrs, _ := i.Addrs()
			for _, a := range addrs {
				if ipn, ok := a.(*net.IPNet); ok && (ipn.IP.Equal(ip) || ipn.IP.IsLoopback()) {
					found[i.Name] = i.Flags&net.FlagUp != 0
				}
			}
		}
		if !found["lo"] || !found["eth0"] {
			t.Errorf("interfaces in the pod namespace: %v", found)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// The host reaches the pod through the bridge.
	l, err := listenIn(path, ip)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		if c, err := l.Accept(); err == nil {
			c.Write([]byte("hi"))
			c.Close()
		}
	}()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatalf("dialing the pod from the host: %v", err)
	}
	buf := make([]byte, 2)
	if _, err := c.Read(buf); err != nil || string(buf) != "hi" {
		t.Errorf("read %q %v", buf, err)
	}
	c.Close()

	if err := n.Teardown(ctx, pod); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("namespace file after teardown: %v", err)
	}
	if err := n.Teardown(ctx, pod); err != nil {
		t.Errorf("second teardown: %v", err)
	}
}

func listenIn(path string, ip net.IP) (net.Listener, error) {
	var l net.Listener
	err := InNetNS(path, func() error {
		var err error
		l, err = net.Listen("tcp", net.JoinHostPort(ip.String(), "0"))
		return err
	})
	return l, err
}

// TestDualStackPodGetsAnAddressPerFamily: with an IPv4 and an IPv6 pod
// CIDR, a pod gets one address of each, IPv4 first as the CIDRs are
// listed, and the host reaches it over IPv6 through the bridge.
func TestDualStackPodGetsAnAddressPerFamily(t *testing.T) {
	n, cidr := newTestNetwork(t)
	var id [6]byte
	if _, err := rand.Read(id[:]); err != nil {
		t.Fatal(err)
	}
	v6 := fmt.Sprintf("fd%02x:%02x%02x:%02x%02x:%02x%02x::/64", id[0], id[1], id[2], id[3], id[4], id[5], id[0])
	if err := n.SetPodCIDR(cidr + "," + v6); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	pod := Pod{Namespace: "default", Name: "dual", UID: "5d0b3a7e-6a55-4a8c-8f0e-3b9d5c1e7f21"}
	path, ips, err := n.Setup(ctx, pod, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Teardown(context.Background(), pod) })
	_, sub4, _ := net.ParseCIDR(cidr)
	_, sub6, _ := net.ParseCIDR(v6)
	if len(ips) != 2 || !sub4.Contains(ips[0]) || !sub6.Contains(ips[1]) {
		t.Fatalf("pod IPs %v; want one of %s, then one of %s", ips, cidr, v6)
	}
	l, err := listenIn(path, ips[1])
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		if c, err := l.Accept(); err == nil {
			c.Write([]byte("v6"))
			c.Close()
		}
	}()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatalf("dialing the pod's IPv6 address from the host: %v", err)
	}
	defer c.Close()
	buf := make([]byte, 2)
	if _, err := c.Read(buf); err != nil || string(buf) != "v6" {
		t.Errorf("read %q %v", buf, err)
	}
}
