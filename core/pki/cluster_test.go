package pki

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestClusterSecretsMakeOneCluster(t *testing.T) {
	first, second, stranger := t.TempDir(), t.TempDir(), t.TempDir()
	b1, err := Ensure(first, Options{Hostname: "s1", NodeName: "s1"})
	if err != nil {
		t.Fatal(err)
	}
	secrets, err := ExportCluster(first)
	if err != nil {
		t.Fatal(err)
	}
	if err := ImportCluster(second, secrets); err != nil {
		t.Fatal(err)
	}
	b2, err := Ensure(second, Options{Hostname: "s2", NodeName: "s2"})
	if err != nil {
		t.Fatal(err)
	}
	h1, _ := CAHash(b1.CA.CertFile)
	h2, _ := CAHash(b2.CA.CertFile)
	if h1 != h2 || len(h1) != 64 {
		t.Fatalf("joined server has another CA: %s vs %s", h1, h2)
	}
	for _, name := range []string{"sa.key", "sa.pub", "front-proxy-ca.crt"} {
		a, _ := os.ReadFile(filepath.Join(first, name))
		b, _ := os.ReadFile(filepath.Join(second, name))
		if string(a) != string(b) {
			t.Errorf("%s differs between the servers", name)
		}
	}
	// Importing again is a no-op; into another cluster's dir it is refused.
	if err := ImportCluster(second, secrets); err != nil {
		t.Fatalf("re-import: %v", err)
	}
	if _, err := Ensure(stranger, Options{Hostname: "x", NodeName: "x"}); err != nil {
		t.Fatal(err)
	}
	if err := ImportCluster(stranger, secrets); err == nil || !strings.Contains(err.Error(), "another cluster") {
		t.Fatalf("import into a foreign data dir: %v", err)
	}

	// Peers of one cluster complete mutual TLS; a stranger is refused.
	if err := handshake(t, b1, b2); err != nil {
		t.Fatalf("peers of one cluster: %v", err)
	}
	b3, _ := Ensure(stranger, Options{Hostname: "x", NodeName: "x"})
	if err := handshake(t, b1, b3); err == nil {
		t.Fatal("a server of another cluster completed the handshake")
	}
}

func handshake(t *testing.T, server, client *Bundle) error {
	t.Helper()
	sc, err := server.PeerTLS()
	if err != nil {
		t.Fatal(err)
	}
	cc, err := client.PeerTLS()
	if err != nil {
		t.Fatal(err)
	}
	l, err := tls.Listen("tcp", "127.0.0.1:0", sc)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	srvErr := make(chan error, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			srvErr <- err
			return
		}
		defer c.Close()
		if err := c.(*tls.Conn).Handshake(); err != nil {
			srvErr <- err
			return
		}
		buf := make([]byte, 1) // echo one byte so the client sees success
		if _, err := c.Read(buf); err != nil {
			srvErr <- err
			return
		}
		_, err = c.Write(buf)
		srvErr <- err
	}()
	c, err := tls.Dial("tcp", l.Addr().String(), cc)
	if err == nil {
		// TLS 1.3: the client learns of a refused client certificate on read.
		c.Write([]byte("x"))
		buf := make([]byte, 1)
		c.SetReadDeadline(deadline())
		_, err = c.Read(buf)
		c.Close()
	}
	if se := <-srvErr; se != nil {
		return se
	}
	return err
}

func deadline() time.Time { return time.Now().Add(500 * time.Millisecond) }
