package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"

	"github.com/keelson/keelson/core/membership"
	"github.com/keelson/keelson/core/pki"
)

// proveServerByPeerTLS returns the check the voter reconciler runs before it
// adds a gossip member as a raft voter: a TLS handshake with the member's raft
// address, with this server's peer credentials, which must present the peer
// certificate of exactly that server (CN keelson-server:<id>, signed by the
// cluster CA). Gossip tags are claims anyone with the gossip key can make; a
// peer certificate is only ever issued to a server holding the cluster CA.
func proveServerByPeerTLS(peer *tls.Config) membership.ProveServer {
	return func(ctx context.Context, id, addr string) error {
		d := tls.Dialer{Config: peer.Clone()}
		conn, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return fmt.Errorf("TLS handshake with %s: %w", addr, err)
		}
		defer conn.Close()
		certs := conn.(*tls.Conn).ConnectionState().PeerCertificates
		if len(certs) == 0 {
			return errors.New("no peer certificate")
		}
		if got, want := certs[0].Subject.CommonName, pki.PeerPrefix+id; got != want {
			return fmt.Errorf("%s presents the peer certificate %q, not %q", addr, got, want)
		}
		return nil
	}
}
