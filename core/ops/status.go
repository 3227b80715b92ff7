package ops

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"github.com/keelson/keelson/core/pki"
)

// peerStatusTimeout bounds how long ClusterStatus waits for one server's
// own report: a server that is down must not hold the whole answer.
const peerStatusTimeout = 3 * time.Second

// ServerStatusRequest asks one server for its own report.
type ServerStatusRequest struct{}

// SnapshotInfo is the newest raft snapshot a server holds.
type SnapshotInfo struct {
	Index uint64    `json:"index"`
	Term  uint64    `json:"term"`
	Time  time.Time `json:"time,omitzero"`
}

// ServerStatus is what one server reports about itself.
type ServerStatus struct {
	ID           string `json:"id"`
	Address      string `json:"address"`
	Version      string `json:"version,omitempty"`
	State        string `json:"state"`
	Term         uint64 `json:"term"`
	CommitIndex  uint64 `json:"commitIndex"`
	AppliedIndex uint64 `json:"appliedIndex"`
	LeaderID     string `json:"leaderId,omitempty"`
	// SinceLeaderContact is, on a follower, how long ago it last heard from
	// the leader.
	SinceLeaderContact *time.Duration   `json:"sinceLeaderContact,omitempty"`
	StoreBytes         int64            `json:"storeBytes"`
	QuotaBytes         int64            `json:"quotaBytes,omitempty"`
	LastSnapshot       *SnapshotInfo    `json:"lastSnapshot,omitempty"`
	Certificates       []pki.CertStatus `json:"certificates,omitempty"`
	// CertificatesError says why Certificates is missing.
	CertificatesError string `json:"certificatesError,omitempty"`
	// TimeoutMultiplier is what this server's raft heartbeat and election
	// timeouts are scaled by while it follows, because its own scheduling
	// runs late (a starved machine); 1 when it is healthy or leads.
	TimeoutMultiplier int `json:"timeoutMultiplier,omitempty"`
}

// ClusterStatusRequest asks a server to gather every raft server's report.
type ClusterStatusRequest struct{}

// ServerReport is one raft server: how the leader (or, without one, the
// answering server) sees it, and its own report when it answered.
type ServerReport struct {
	Peer
	Status *ServerStatus `json:"status,omitempty"`
	// Error says why Status is missing (the server is down or unreachable).
	Error string `json:"error,omitempty"`
	// Lag is the leader's commit index minus this server's applied index.
	Lag *uint64 `json:"lag,omitempty"`
}

// ClusterStatus is every raft server's report.
type ClusterStatus struct {
	AnsweredBy string `json:"answeredBy"`
	// View is the server whose raft view (voters, last contact) is shown:
	// the leader when it answered, else the answering server.
	View     string         `json:"view"`
	LeaderID string         `json:"leaderId,omitempty"`
	Term     uint64         `json:"term"`
	Servers  []ServerReport `json:"servers"`
	// Members is the gossip pool as the answering server sees it.
	Members []GossipMember `json:"members,omitempty"`
	// FeatureLevel is the store feature level every raft server
	// advertises (the lowest of theirs): raft commands of a higher level
	// are refused until the servers behind are upgraded.
	FeatureLevel int `json:"featureLevel,omitempty"`
	// FeatureLevelError says why FeatureLevel is missing.
	FeatureLevelError string `json:"featureLevelError,omitempty"`
}

// GossipMember is one node of the gossip pool.
type GossipMember struct {
	Name    string `json:"name"`
	Role    string `json:"role"`
	Status  string `json:"status"`
	Address string `json:"address"`
	// FeatureLevel is the store feature level a server advertises (the
	// newest raft command level its build applies); 0 for agents and for
	// servers of a version that advertises none.
	FeatureLevel int `json:"featureLevel,omitempty"`
}

// ServerStatus reports this server's raft state, store size, newest raft
// snapshot and certificates.
func (s *Service) ServerStatus(ctx context.Context, _ *ServerStatusRequest) (*ServerStatus, error) {
	r := s.cfg.Node.Raft()
	_, leader := r.LeaderWithID()
	out := &ServerStatus{
		ID: s.cfg.Node.ID(), Address: s.cfg.Node.Addr(), Version: s.cfg.Version,
		State: r.State().String(), Term: r.CurrentTerm(), CommitIndex: r.CommitIndex(),
		AppliedIndex: s.cfg.Node.AppliedIndex(), LeaderID: string(leader),
		StoreBytes: s.cfg.Store.View().Size(), QuotaBytes: s.cfg.QuotaBytes,
		TimeoutMultiplier: s.cfg.Node.TimeoutMultiplier(),
	}
	if r.State() != raft.Leader {
		if last := r.LastContact(); !last.IsZero() {
			out.SinceLeaderContact = since(s.cfg.Now(), last)
		}
	}
	out.LastSnapshot = lastSnapshot(r.Stats(), s.cfg.DataDir)
	if s.cfg.PKIDir != "" {
		certs, err := pki.CheckExpiry(s.cfg.PKIDir, s.cfg.Now())
		if err != nil {
			out.CertificatesError = err.Error()
		}
		out.Certificates = certs
	}
	return out, nil
}

// lastSnapshot reads the newest snapshot's index and term from raft's stats
// and its time from the snapshot's directory name, term-index-milliseconds.
func lastSnapshot(stats map[string]string, dataDir string) *SnapshotInfo {
	index, _ := strconv.ParseUint(stats["last_snapshot_index"], 10, 64)
	term, _ := strconv.ParseUint(stats["last_snapshot_term"], 10, 64)
	if index == 0 {
		return nil
	}
	info := &SnapshotInfo{Index: index, Term: term}
	if dataDir == "" {
		return info
	}
	entries, _ := os.ReadDir(filepath.Join(dataDir, raftDirName, "snapshots"))
	prefix := strconv.FormatUint(term, 10) + "-" + strconv.FormatUint(index, 10) + "-"
	for _, e := range entries {
		if ms, ok := strings.CutPrefix(e.Name(), prefix); ok {
			if v, err := strconv.ParseInt(ms, 10, 64); err == nil {
				info.Time = time.UnixMilli(v).UTC()
			}
		}
	}
	return info
}

// ClusterStatus gathers every raft server's own report, in parallel and
// each bounded by peerStatusTimeout, with the leader's view of the raft
// configuration when the leader answers.
func (s *Service) ClusterStatus(ctx context.Context, _ *ClusterStatusRequest) (*ClusterStatus, error) {
	view, err := s.Peers(ctx, &PeersRequest{})
	if err != nil {
		return nil, err
	}
	if view.LeaderID != "" && view.LeaderID != view.Self {
		cctx, cancel := context.WithTimeout(ctx, peerStatusTimeout)
		if lv, err := forward[PeersResponse](cctx, s, view.LeaderAddress, "Peers", &PeersRequest{}); err == nil {
			view = lv
		}
		cancel()
	}
	out := &ClusterStatus{AnsweredBy: s.cfg.Node.ID(), View: view.Self, LeaderID: view.LeaderID, Term: view.Term}
	out.Servers = make([]ServerReport, len(view.Peers))
	var wg sync.WaitGroup
	for i, p := range view.Peers {
		out.Servers[i].Peer = p
		wg.Add(1)
		go func() {
			defer wg.Done()
			out.Servers[i].Status, out.Servers[i].Error = s.reportOf(ctx, p)
		}()
	}
	wg.Wait()
	fillLag(out)
	if s.cfg.Members != nil {
		out.Members = s.cfg.Members()
	}
	if s.cfg.FeatureLevel != nil {
		if out.FeatureLevel, err = s.cfg.FeatureLevel(); err != nil {
			out.FeatureLevelError = err.Error()
		}
	}
	return out, nil
}

// reportOf asks server p for its own report (this server answers itself).
func (s *Service) reportOf(ctx context.Context, p Peer) (*ServerStatus, string) {
	if p.ID == s.cfg.Node.ID() {
		st, _ := s.ServerStatus(ctx, &ServerStatusRequest{})
		return st, ""
	}
	cctx, cancel := context.WithTimeout(ctx, peerStatusTimeout)
	defer cancel()
	st, err := forward[ServerStatus](cctx, s, p.Address, "ServerStatus", &ServerStatusRequest{})
	if err != nil {
		return nil, "no answer from " + p.Address + ": " + err.Error()
	}
	return st, ""
}

// fillLag sets each answering server's lag behind the leader's commit
// index, when the leader answered.
func fillLag(cs *ClusterStatus) {
	var commit uint64
	found := false
	for _, r := range cs.Servers {
		if r.ID == cs.LeaderID && r.Status != nil {
			commit, found = r.Status.CommitIndex, true
		}
	}
	if !found {
		return
	}
	for i, r := range cs.Servers {
		if r.Status == nil {
			continue
		}
		lag := uint64(0)
		if commit > r.Status.AppliedIndex {
			lag = commit - r.Status.AppliedIndex
		}
		cs.Servers[i].Lag = &lag
	}
}
