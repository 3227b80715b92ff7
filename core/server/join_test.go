package server

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/keelson/keelson/config"
	"github.com/keelson/keelson/core/agenttoken"
	"github.com/keelson/keelson/core/pki"
	"github.com/keelson/keelson/internal/join"
	"github.com/keelson/keelson/internal/serfpool"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

func TestJoinFetchesClusterSecrets(t *testing.T) {
	dir := t.TempDir()
	b, err := pki.Ensure(dir, pki.Options{Hostname: "s1", NodeName: "s1"})
	if err != nil {
		t.Fatal(err)
	}
	hash, _ := pki.CAHash(b.CA.CertFile)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sv := &supervisor{pkiDir: dir, secret: "s3cret", log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	go sv.serve(ctx, l, b)
	addr := []string{l.Addr().String()}
	fctx, fcancel := context.WithTimeout(ctx, 10*time.Second)
	defer fcancel()

	s, err := fetchClusterSecrets(fctx, addr, join.Token{CAHash: hash, Secret: "s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	want, _ := pki.ExportCluster(dir)
	if string(s.CAKey) != string(want.CAKey) || string(s.SAKey) != string(want.SAKey) {
		t.Fatal("received secrets differ from the cluster's")
	}
	if _, err := fetchClusterSecrets(fctx, addr, join.Token{CAHash: hash, Secret: "wrong"}); err == nil || !strings.Contains(err.Error(), "wrong token") {
		t.Fatalf("wrong secret: %v", err)
	}
	if _, err := fetchClusterSecrets(fctx, addr, join.Token{CAHash: strings.Repeat("00", 32), Secret: "s3cret"}); err == nil || !strings.Contains(err.Error(), "CA hash") {
		t.Fatalf("wrong CA hash: %v", err)
	}
	if _, err := fetchClusterSecrets(fctx, addr, join.Token{Secret: "s3cret"}); err == nil || !strings.Contains(err.Error(), "full token") {
		t.Fatalf("bare secret: %v", err)
	}
}

// testSupervisor serves a supervisor whose server token is serverSecret and
// whose cluster's agent token is agentSecret, with a fake API holding the
// agent token's record and the Nodes.
type testSupervisor struct {
	addr   string
	hash   string
	kube   *fake.Clientset
	client *http.Client
}

const (
	serverSecret = "s3cret-server-token"
	agentSecret  = "agent-token-secret-0123456789abcdef"
)

func startTestSupervisor(t *testing.T) *testSupervisor {
	t.Helper()
	dir := t.TempDir()
	b, err := pki.Ensure(dir, pki.Options{Hostname: "s1", NodeName: "s1", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	hash, _ := pki.CAHash(b.CA.CertFile)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	kube := fake.NewClientset()
	if _, err := agenttoken.Ensure(ctx, kube, t.TempDir(), agentSecret, hash, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	nodes, err := newNodeIdentities(kube, "10.43.0.0/16", func() ([]string, []net.IP) { return []string{"s1"}, []net.IP{net.ParseIP("10.0.0.1")} })
	if err != nil {
		t.Fatal(err)
	}
	key, _ := serfpool.GossipKey(serverSecret)
	sv := &supervisor{pkiDir: dir, secret: serverSecret, gossipKey: key, log: slog.New(slog.DiscardHandler), nodes: nodes,
		agentTokens: func(ctx context.Context, s string) (bool, error) { return agenttoken.Verify(ctx, kube, s) }}
	go sv.serve(ctx, l, b)
	client, err := join.PinnedClient(join.Token{CAHash: hash, Secret: "x"})
	if err != nil {
		t.Fatal(err)
	}
	return &testSupervisor{addr: l.Addr().String(), hash: hash, kube: kube, client: client}
}

func (ts *testSupervisor) token(secret string) join.Token {
	return join.Token{CAHash: ts.hash, Secret: secret}
}

// credentials asks for node credentials for name with the serving names
// given, signing the client request with key.
func (ts *testSupervisor) credentials(t *testing.T, secret, name string, key *ecdsa.PrivateKey, dns []string, ips ...string) (join.NodeCredentials, error) {
	t.Helper()
	var addrs []net.IP
	for _, ip := range ips {
		addrs = append(addrs, net.ParseIP(ip))
	}
	req := join.NodeCredentialsRequest{
		NodeName:   name,
		ClientCSR:  testCSRWith(t, key, x509.CertificateRequest{Subject: pkix.Name{CommonName: "system:masters-please"}}),
		ServingCSR: testCSR(t, x509.CertificateRequest{DNSNames: dns, IPAddresses: addrs}),
	}
	var got join.NodeCredentials
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := join.Call(ctx, ts.client, ts.addr, http.MethodPost, join.NodeCredentialsPath, ts.token(secret), req, &got)
	return got, err
}

func TestSupervisorIssuesNodeCredentials(t *testing.T) {
	ts := startTestSupervisor(t)
	got, err := ts.credentials(t, agentSecret, "worker-1", newKey(t), []string{"worker-1"}, "10.0.0.7")
	if err != nil {
		t.Fatal(err)
	}
	client1 := parsePEMCert(t, got.ClientCert)
	if client1.Subject.CommonName != "system:node:worker-1" || len(client1.Subject.Organization) != 1 || client1.Subject.Organization[0] != "system:nodes" {
		t.Errorf("client certificate subject %v, want CN system:node:worker-1 O system:nodes", client1.Subject)
	}
	serving := parsePEMCert(t, got.ServingCert)
	if len(serving.IPAddresses) != 1 || !serving.IPAddresses[0].Equal(net.ParseIP("10.0.0.7")) || serving.DNSNames[0] != "worker-1" {
		t.Errorf("serving certificate names %v %v", serving.DNSNames, serving.IPAddresses)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(got.CACert)
	if _, err := serving.Verify(x509.VerifyOptions{Roots: pool, DNSName: "worker-1"}); err != nil {
		t.Errorf("serving certificate does not verify against the returned CA: %v", err)
	}
	if _, err := client1.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("client certificate does not verify against the returned CA: %v", err)
	}
	if want, _ := serfpool.GossipKey(serverSecret); string(got.GossipKey) != string(want) {
		t.Errorf("gossip key %x, want the one derived from the server token", got.GossipKey)
	}
	if _, err := ts.credentials(t, "wrong-secret", "worker-2", newKey(t), []string{"worker-2"}, "10.0.0.8"); !errors.Is(err, join.ErrWrongCluster) {
		t.Errorf("wrong secret: %v, want ErrWrongCluster", err)
	}
	if _, err := ts.credentials(t, agentSecret, "Not_A_Name", newKey(t), []string{"worker-2"}, "10.0.0.8"); err == nil || !strings.Contains(err.Error(), "node name") {
		t.Errorf("bad node name: %v", err)
	}
}

// TestSupervisorTokenKinds: the server token may fetch the cluster secrets
// and node credentials, an agent token only node credentials.
func TestSupervisorTokenKinds(t *testing.T) {
	ts := startTestSupervisor(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, tc := range []struct {
		name, secret      string
		secrets, nodeCred string // "" allowed, else a substring of the refusal
	}{
		{"server token", serverSecret, "", ""},
		{"agent token", agentSecret, "403", ""},
		{"wrong token", "not-a-token-of-this-cluster", "wrong token", "wrong token"},
		{"no token", "", "wrong token", "wrong token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := fetchClusterSecrets(ctx, []string{ts.addr}, ts.token(tc.secret))
			check(t, "cluster secrets", err, tc.secrets)
			name := "node-" + strings.ReplaceAll(tc.name, " ", "-")
			_, err = ts.credentials(t, tc.secret, name, newKey(t), []string{name}, "10.0.1."+fmt.Sprint(len(tc.name)))
			check(t, "node credentials", err, tc.nodeCred)
		})
	}
}

func check(t *testing.T, what string, err error, want string) {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Errorf("%s: %v, want success", what, err)
	case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
		t.Errorf("%s: %v, want an error containing %q", what, err, want)
	}
}

// TestSupervisorBindsNodeNames: a node name belongs to the first key that
// registered it until the Node is deleted.
func TestSupervisorBindsNodeNames(t *testing.T) {
	ts := startTestSupervisor(t)
	owner, thief := newKey(t), newKey(t)
	if _, err := ts.credentials(t, agentSecret, "worker-1", owner, []string{"worker-1"}, "10.0.0.7"); err != nil {
		t.Fatal(err)
	}
	_, err := ts.credentials(t, agentSecret, "worker-1", thief, []string{"worker-1"}, "10.0.0.9")
	if err == nil || !strings.Contains(err.Error(), "registered with another key") || !strings.Contains(err.Error(), "delete node worker-1") {
		t.Fatalf("another key for a bound name: %v, want a refusal that says how to release the name", err)
	}
	// The server token is bound by the same rule.
	if _, err := ts.credentials(t, serverSecret, "worker-1", thief, []string{"worker-1"}, "10.0.0.9"); err == nil {
		t.Fatal("the server token took over a bound name with another key")
	}
	if _, err := ts.credentials(t, agentSecret, "worker-1", owner, []string{"worker-1"}, "10.0.0.7"); err != nil {
		t.Fatalf("renewal with the bound key: %v", err)
	}
	if err := ts.kube.CoreV1().Nodes().Delete(context.Background(), "worker-1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.credentials(t, agentSecret, "worker-1", thief, []string{"worker-1"}, "10.0.0.9"); err != nil {
		t.Fatalf("a new key after the operator deleted the Node: %v", err)
	}
	n, err := ts.kube.CoreV1().Nodes().Get(context.Background(), "worker-1", metav1.GetOptions{})
	if err != nil || n.Annotations[NodeKeyAnnotation] == "" {
		t.Fatalf("Node after rebinding: %v %v, want the key annotation", n, err)
	}
}

// TestSupervisorServingSANs: an agent token's node names only itself and
// addresses that are nobody else's.
func TestSupervisorServingSANs(t *testing.T) {
	ts := startTestSupervisor(t)
	other := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "other"},
		Status: v1.NodeStatus{Addresses: []v1.NodeAddress{{Type: v1.NodeInternalIP, Address: "10.0.0.50"}}}}
	if _, err := ts.kube.CoreV1().Nodes().Create(context.Background(), other, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// A node that registered but has reported no address yet.
	if _, err := ts.credentials(t, agentSecret, "fresh", newKey(t), []string{"fresh"}, "10.0.0.60"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		dns  []string
		ips  []string
		want string
	}{
		{"loopback", []string{"w"}, []string{"127.0.0.1"}, "loopback"},
		{"localhost", []string{"w", "localhost"}, []string{"10.0.0.7"}, `"localhost"`},
		{"kubernetes", []string{"w", "kubernetes.default.svc"}, []string{"10.0.0.7"}, "kubernetes.default.svc"},
		{"service IP", []string{"w"}, []string{"10.43.0.1"}, "service range"},
		{"server IP", []string{"w"}, []string{"10.0.0.1"}, "server or another node"},
		{"other node's IP", []string{"w"}, []string{"10.0.0.50"}, "server or another node"},
		{"other node's name", []string{"w", "other"}, []string{"10.0.0.7"}, `"other"`},
		{"registered node's address", []string{"w"}, []string{"10.0.0.60"}, "server or another node"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ts.credentials(t, agentSecret, "w", newKey(t), tc.dns, tc.ips...)
			check(t, "serving names", err, tc.want)
		})
	}
	if _, err := ts.credentials(t, agentSecret, "kubernetes", newKey(t), []string{"kubernetes"}, "10.0.0.7"); err == nil || !strings.Contains(err.Error(), "reserved") {
		t.Errorf("node named kubernetes: %v, want refused as reserved", err)
	}
	if _, err := ts.credentials(t, agentSecret, "s1", newKey(t), []string{"s1"}, "10.0.0.7"); err == nil || !strings.Contains(err.Error(), "is a server's") {
		t.Errorf("agent token for a server's node name: %v, want refused", err)
	}
	// A server's own agent joins with the server token on a single host.
	if _, err := ts.credentials(t, serverSecret, "s1", newKey(t), []string{"s1"}, "127.0.0.1"); err != nil {
		t.Errorf("server token with a loopback node address: %v", err)
	}
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func testCSRWith(t *testing.T, key *ecdsa.PrivateKey, tmpl x509.CertificateRequest) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

func testCSR(t *testing.T, tmpl x509.CertificateRequest) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

func parsePEMCert(t *testing.T, data []byte) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode(data)
	if block == nil {
		t.Fatalf("no PEM in %q", data)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestAgentTokenSecretIsChecked(t *testing.T) {
	for _, tc := range []struct {
		token, agent, want string // want: "" accepted
	}{
		{"", "", ""},
		{"", "9c4f1e7a2b6d3058a1e4f7c2b9d60315", ""},
		{"", "K10" + strings.Repeat("ab", 32) + "::9c4f1e7a2b6d3058a1e4f7c2b9d60315", ""},
		{"", "passwordpassword", "agentToken (--agent-token): the token is too guessable"},
		{"", "short", "keelson token generate"},
		{"same-secret-9c4f1e7a2b6d3058", "same-secret-9c4f1e7a2b6d3058", "must differ from the server token"},
	} {
		got, err := agentTokenSecret(config.Server{Token: tc.token, AgentToken: tc.agent})
		switch {
		case tc.want == "" && (err != nil || !strings.HasSuffix(tc.agent, got)):
			t.Errorf("%q: %q %v, want its secret", tc.agent, got, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%q: %v, want an error containing %q", tc.agent, err, tc.want)
		}
	}
}
