package server

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
)

// etcdListener opens the operator's etcd listener (--etcd-listen). With
// --etcd-client-ca it serves TLS with the API server's certificate and
// requires a client certificate that CA signed, as etcd does with
// --client-cert-auth; without, it is plain, which config validation allows
// on loopback only.
func (s *Server) etcdListener() (net.Listener, error) {
	var tc *tls.Config
	if s.cfg.EtcdClientCA != "" {
		var err error
		if tc, err = etcdTLSConfig(s.cfg.EtcdClientCA, s.bundle.Serving.CertFile, s.bundle.Serving.KeyFile); err != nil {
			return nil, err
		}
	}
	l, err := net.Listen("tcp", s.cfg.EtcdListen)
	if err != nil {
		return nil, fmt.Errorf("listening on --etcd-listen %s: %w", s.cfg.EtcdListen, err)
	}
	if tc == nil {
		return l, nil
	}
	return tls.NewListener(l, tc), nil
}

// etcdTLSConfig serves certFile/keyFile and requires a client certificate
// signed by the CA in caFile.
func etcdTLSConfig(caFile, certFile, keyFile string) (*tls.Config, error) {
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("etcdClientCA (--etcd-client-ca): %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("etcdClientCA (--etcd-client-ca): %s holds no PEM certificate", caFile)
	}
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("etcd listener certificate: %w", err)
	}
	return &tls.Config{
		Certificates: []tls.Certificate{pair},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
		// gRPC clients over TLS insist on HTTP/2 by ALPN.
		NextProtos: []string{"h2"},
		MinVersion: tls.VersionTLS12,
	}, nil
}
