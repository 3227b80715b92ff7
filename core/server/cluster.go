package server

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/keelson/keelson/config"
	"github.com/keelson/keelson/core/agenttoken"
	"github.com/keelson/keelson/core/kvserver"
	"github.com/keelson/keelson/core/membership"
	"github.com/keelson/keelson/core/pki"
	"github.com/keelson/keelson/fsm"
	"github.com/keelson/keelson/internal/join"
	"github.com/keelson/keelson/internal/serfpool"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"k8s.io/client-go/kubernetes"
)

type identity struct {
	clusterID uint64
	secret    string
}

// JoinTokenFile holds the full join token other servers need.
func JoinTokenFile(dataDir string) string { return filepath.Join(dataDir, "join-token") }

// ensureIdentity makes this server part of a cluster identity: the first
// server creates the CAs and service-account key; a server started with
// --join and no PKI of its own fetches them from a cluster member, pinned by
// the token. Either way it then issues its own leaf certificates.
func (s *Server) ensureIdentity(ctx context.Context) (identity, error) {
	cfg := s.cfg
	pkiDir := filepath.Join(cfg.DataDir, "pki")
	var tok join.Token
	if cfg.Token != "" {
		var err error
		if tok, err = join.ParseToken(cfg.Token); err != nil {
			return identity{}, err
		}
	}
	if _, err := os.Stat(filepath.Join(pkiDir, "ca.crt")); errors.Is(err, os.ErrNotExist) && len(cfg.Join) > 0 {
		secrets, err := s.fetchSecretsWithRetry(ctx, tok)
		if err != nil {
			return identity{}, err
		}
		if err := pki.ImportCluster(pkiDir, secrets); err != nil {
			return identity{}, err
		}
		s.log.Info("received the cluster's CA, service-account and encryption keys", "from", cfg.Join)
	}
	var ips []net.IP
	for _, a := range []string{cfg.BindAddress, cfg.AdvertiseIP()} {
		if ip := net.ParseIP(a); ip != nil {
			ips = append(ips, ip)
		}
	}
	s.pkiOpts = pki.Options{
		ClusterDomain: cfg.APIServer.ClusterDomain,
		ServiceCIDR:   cfg.APIServer.ServiceCIDR,
		IPs:           ips,
		NodeName:      cfg.NodeName,
		LeafLifetime:  s.opts.LeafCertLifetime,
		CALifetime:    s.opts.CACertLifetime,
		Logger:        s.log,
	}
	bundle, err := pki.Ensure(pkiDir, s.pkiOpts)
	if err != nil {
		return identity{}, fmt.Errorf("cluster certificates in %s: %w", pkiDir, err)
	}
	s.bundle = bundle
	caHash, err := pki.CAHash(bundle.CA.CertFile)
	if err != nil {
		return identity{}, err
	}
	if tok.CAHash != "" && tok.CAHash != caHash {
		return identity{}, fmt.Errorf("token (--token) belongs to another cluster (CA hash %.12s..., this data dir has %.12s...): use this cluster's token or a fresh --data-dir", tok.CAHash, caHash)
	}
	secret, err := serfpool.LoadOrCreateToken(cfg.DataDir, tok.Secret)
	if err != nil {
		return identity{}, fmt.Errorf("token (--token): %w", err)
	}
	s.secret = secret
	full := join.Token{CAHash: caHash, Secret: secret}.String()
	if err := os.WriteFile(JoinTokenFile(cfg.DataDir), []byte(full+"\n"), 0o600); err != nil {
		return identity{}, fmt.Errorf("writing join token: %w", err)
	}
	if s.opts.OnJoinToken != nil {
		s.opts.OnJoinToken(full)
	}
	s.log.Info("join other servers with the server token in "+JoinTokenFile(cfg.DataDir)+" (cluster root: node agents join with "+agenttoken.File(cfg.DataDir)+")", "join_address", net.JoinHostPort(cfg.AdvertiseIP(), strconv.Itoa(cfg.SerfPort)))
	raw, _ := hex.DecodeString(caHash)
	return identity{clusterID: binary.BigEndian.Uint64(raw[:8]), secret: secret}, nil
}

// agentTokenSecret is the secret of --agent-token, checked: random enough
// and not the server token's.
func agentTokenSecret(cfg config.Server) (string, error) {
	if cfg.AgentToken == "" {
		return "", nil
	}
	tok, err := join.ParseToken(cfg.AgentToken)
	if err != nil {
		return "", fmt.Errorf("agentToken (--agent-token): %w", err)
	}
	if err := join.CheckSecret(tok.Secret, "agentToken (--agent-token)"); err != nil {
		return "", err
	}
	if cfg.Token != "" {
		if st, err := join.ParseToken(cfg.Token); err == nil && st.Secret == tok.Secret {
			return "", errors.New("agentToken (--agent-token): must differ from the server token (--token): an agent token must not open the cluster's secrets")
		}
	}
	return tok.Secret, nil
}

// fetchSecretsWithRetry asks the --join servers for the cluster secrets until
// one answers: they may still be starting.
func (s *Server) fetchSecretsWithRetry(ctx context.Context, tok join.Token) (*pki.ClusterSecrets, error) {
	var addrs []string
	for _, j := range s.cfg.Join {
		host, _, err := net.SplitHostPort(j)
		if err != nil {
			host = j
		}
		addrs = append(addrs, net.JoinHostPort(host, strconv.Itoa(s.cfg.SupervisorPort)))
	}
	wait := 500 * time.Millisecond
	for {
		secrets, err := fetchClusterSecrets(ctx, addrs, tok)
		if err == nil {
			return secrets, nil
		}
		if tok.CAHash == "" || join.Refused(err) {
			return nil, err
		}
		// Like k3s, Consul and Nomad, keep trying: the first server may
		// still be starting. Each attempt says what to check.
		s.log.Warn("waiting for a server to join: none of the --join servers answered; retrying", "servers", addrs, "retry_in", wait, "err", err, "check", join.UnreachableHint(err, "--join"))
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("joining %v: %w", addrs, err)
		case <-time.After(wait):
		}
		wait = min(2*wait, 10*time.Second)
	}
}

// serveSupervisor serves joining servers on the supervisor port.
func (s *Server) serveSupervisor(ctx context.Context) error {
	addr := net.JoinHostPort(s.cfg.BindAddress, strconv.Itoa(s.cfg.SupervisorPort))
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listening on supervisor port (--supervisor-port) %s: %w", addr, err)
	}
	sv, err := s.newSupervisor()
	if err != nil {
		l.Close()
		return err
	}
	return sv.serve(ctx, l, s.bundle)
}

// newSupervisor wires the supervisor to this server's token, its gossip key
// and, with an API server, the agent token's record and the node bindings.
func (s *Server) newSupervisor() (*supervisor, error) {
	key, err := serfpool.GossipKey(s.secret)
	if err != nil {
		return nil, err
	}
	sv := &supervisor{pkiDir: s.bundle.Dir, secret: s.secret, gossipKey: key, log: s.log.With("component", "supervisor"), servers: s.serverAddresses}
	if s.cfg.DisableAPIServer {
		return sv, nil
	}
	rc := s.adminRESTConfig("keelson-supervisor")
	rc.Timeout = 10 * time.Second
	kube, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("supervisor: API client: %w", err)
	}
	if sv.nodes, err = newNodeIdentities(kube, s.cfg.APIServer.ServiceCIDR, s.serverIdentities); err != nil {
		return nil, err
	}
	sv.agentTokens = agenttoken.NewVerifier(kube).Verify
	return sv, nil
}

// serverIdentities lists the node names and addresses of this server and of
// every server in the gossip pool: no agent may claim them.
func (s *Server) serverIdentities() (names []string, out []net.IP) {
	names = append(names, s.cfg.NodeName)
	add := func(hostport string) {
		host, _, err := net.SplitHostPort(hostport)
		if err != nil {
			host = hostport
		}
		if ip := net.ParseIP(host); ip != nil && !ip.IsUnspecified() {
			out = append(out, ip)
		}
	}
	add(s.cfg.BindAddress)
	add(s.cfg.AdvertiseIP())
	if s.pool != nil {
		for _, m := range s.pool.Members() {
			if m.IsServer() {
				names = append(names, m.Name)
				add(m.SerfAddr)
				add(m.APIAddr)
			}
		}
	}
	return names, out
}

// ensureAgentToken makes sure, once the API server is ready, that the
// cluster has an agent token (see core/agenttoken), retrying until the
// store answers; the server that creates it says how agents join.
func (s *Server) ensureAgentToken(ctx context.Context, apiReady <-chan struct{}) error {
	select {
	case <-ctx.Done():
		return nil
	case <-apiReady:
	}
	kube, err := kubernetes.NewForConfig(s.adminRESTConfig("keelson-agent-token"))
	if err != nil {
		return fmt.Errorf("agent token: API client: %w", err)
	}
	caHash, err := pki.CAHash(s.bundle.CA.CertFile)
	if err != nil {
		return err
	}
	wait := 500 * time.Millisecond
	for {
		created, err := agenttoken.Ensure(ctx, kube, s.cfg.DataDir, s.agentSecret, caHash, s.log)
		if err == nil {
			if created {
				s.log.Info("created the cluster's agent token: join node agents with "+
					"`keelson agent --server https://"+net.JoinHostPort(s.cfg.AdvertiseIP(), strconv.Itoa(s.cfg.APIServer.Port))+
					" --token-file FILE`, FILE a copy of "+agenttoken.File(s.cfg.DataDir), "file", agenttoken.File(s.cfg.DataDir))
			}
			return nil
		}
		s.log.Warn("waiting to store the agent token", "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		wait = min(2*wait, 10*time.Second)
	}
}

// serverAddresses lists the live servers' API and gossip addresses, which
// joining agents use to reach any of them.
func (s *Server) serverAddresses() []join.Server {
	if s.pool == nil {
		return nil
	}
	var out []join.Server
	for _, m := range s.pool.Members() {
		if m.IsServer() && m.Status == serfpool.StatusAlive && m.APIAddr != "" {
			out = append(out, join.Server{API: m.APIAddr, Gossip: m.SerfAddr})
		}
	}
	return out
}

// startMembership joins the gossip pool, runs the raft reconciler and, for
// a new cluster with --bootstrap-expect, bootstraps raft once enough servers
// are seen.
func (s *Server) startMembership(ctx context.Context, secret string) error {
	cfg := s.cfg
	mc := serfpool.DefaultConfig()
	mc.NodeName = cfg.NodeName
	mc.Role = serfpool.RoleServer
	mc.BindAddr = net.JoinHostPort(cfg.BindAddress, strconv.Itoa(cfg.SerfPort))
	if ip := net.ParseIP(cfg.BindAddress); ip != nil && ip.IsUnspecified() || cfg.AdvertiseAddress != "" {
		mc.AdvertiseAddr = net.JoinHostPort(cfg.AdvertiseIP(), strconv.Itoa(cfg.SerfPort))
	}
	mc.APIAddr = net.JoinHostPort(cfg.AdvertiseIP(), strconv.Itoa(cfg.APIServer.Port))
	mc.RaftAddr = s.raft.Addr()
	mc.FeatureLevel = fsm.FeatureLevel
	mc.Token = secret
	for _, j := range cfg.Join {
		if _, _, err := net.SplitHostPort(j); err != nil {
			j = net.JoinHostPort(j, strconv.Itoa(cfg.SerfPort))
		}
		mc.Join = append(mc.Join, j)
	}
	mc.BootstrapExpect = cfg.BootstrapExpect
	mc.DataDir = cfg.DataDir
	mc.Logger = s.log
	servers, err := membership.FromRaft(s.raft).Servers()
	if err != nil {
		return fmt.Errorf("reading raft configuration: %w", err)
	}
	mc.Bootstrapped = len(servers) > 0
	pool, err := serfpool.Start(ctx, mc)
	if err != nil {
		return fmt.Errorf("starting gossip on %s: %w", mc.BindAddr, err)
	}
	s.pool = pool
	// The voter reconciler is a leader duty (leader.go); every server
	// publishes that it holds raft state.
	go membership.PublishBootstrapped(ctx, pool, membership.FromRaft(s.raft))
	if !mc.Bootstrapped && cfg.BootstrapExpect > 1 {
		go s.bootstrapWhenExpected(ctx)
	}
	return nil
}

func (s *Server) bootstrapWhenExpected(ctx context.Context) {
	n := s.cfg.BootstrapExpect
	s.log.Info("waiting for servers to bootstrap the cluster", "bootstrap_expect", n)
	members, err := membership.WaitForBootstrap(ctx, s.pool, n)
	if errors.Is(err, membership.ErrClusterExists) {
		s.log.Info("a cluster already exists; waiting for its leader to add this server")
		return
	}
	if err != nil {
		if ctx.Err() == nil {
			s.log.Error("bootstrap-expect", "err", err)
		}
		return
	}
	if err := s.raft.Raft().BootstrapCluster(membership.BootstrapConfiguration(members)).Error(); err != nil {
		s.log.Error("bootstrapping raft", "err", err)
		return
	}
	s.pool.SetBootstrapped()
	s.log.Info("bootstrapped the cluster", "servers", len(members))
}

// etcdMembers lists the raft servers as etcd members for MemberList.
func (s *Server) etcdMembers() []*pb.Member {
	servers, err := membership.FromRaft(s.raft).Servers()
	if err != nil {
		return nil
	}
	var out []*pb.Member
	for _, srv := range servers {
		out = append(out, &pb.Member{ID: kvserver.MemberID(srv.ID), Name: srv.ID, PeerURLs: []string{"https://" + srv.Address}, IsLearner: !srv.Voter})
	}
	return out
}

// leave hands leadership over before this server stops, so writes resume
// without waiting for an election timeout. Like Consul servers, it does not
// leave the pool: a restarting server stays a raft voter, and only one that
// stays dead past the reconciler's grace period is removed.
func (s *Server) leave() {
	if s.pool == nil {
		return
	}
	if s.raft.IsLeader() {
		if servers, err := membership.FromRaft(s.raft).Servers(); err == nil && len(servers) > 1 {
			if err := s.raft.Raft().LeadershipTransfer().Error(); err != nil {
				s.log.Warn("leadership transfer before leaving", "err", err)
			}
		}
	}
	if err := s.pool.Shutdown(); err != nil {
		s.log.Warn("gossip shutdown", "err", err)
	}
}
