package main

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keelson/keelson/core/ops"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// processWait bounds how long the process test waits for a server; a
// deadlock guard on a shared, slow machine, never a timing claim.
const processWait = 2 * time.Minute

// opsBinary returns the keelson binary under test ($KEELSON_BIN, else
// bin/keelson), or skips when it is missing or predates these commands.
func opsBinary(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("KEELSON_BIN")
	if bin == "" {
		_, file, _, _ := runtime.Caller(0)
		bin = filepath.Join(filepath.Dir(file), "..", "..", "bin", "keelson")
	}
	if _, err := os.Stat(bin); err != nil {
		t.Skipf("keelson binary not found at %s: run `make build` or set KEELSON_BIN", bin)
	}
	if out, err := exec.Command(bin, "raft", "peers", "--help").CombinedOutput(); err != nil {
		t.Skipf("%s has no `raft peers` (%v: %s): rebuild it", bin, err, out)
	}
	return bin
}

func freePortOn(t *testing.T, ip string) int {
	t.Helper()
	l, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Skipf("cannot listen on %s (needed for a second loopback server): %v", ip, err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// proc is one `keelson server` process.
type proc struct {
	name, ip, dir  string
	raftPort, etcd int
	cmd            *exec.Cmd
	exited         chan struct{}
	log            string
}

func (p *proc) raftAddr() string { return net.JoinHostPort(p.ip, strconv.Itoa(p.raftPort)) }

// startProc starts a store-only server. Servers of one test share the gossip
// and supervisor ports, on different loopback IPs, because a joining server
// fetches the cluster's secrets from its own --supervisor-port on the
// --join host.
func startProc(t *testing.T, bin string, p *proc, shared [3]int, extra ...string) {
	t.Helper()
	p.log = filepath.Join(t.TempDir(), p.name+".log")
	f, err := os.Create(p.log)
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{"server", "--data-dir", p.dir, "--node-name", p.name, "--bind-address", p.ip,
		"--raft-bind", p.raftAddr(), "--etcd-listen", net.JoinHostPort(p.ip, strconv.Itoa(p.etcd)),
		"--serf-port", strconv.Itoa(shared[0]), "--supervisor-port", strconv.Itoa(shared[1]),
		"--api-port", strconv.Itoa(shared[2]), "--disable-apiserver", "--disable-agent"}, extra...)
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stdout, p.cmd.Stderr = f, f
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p.exited = make(chan struct{})
	go func() { p.cmd.Wait(); f.Close(); close(p.exited) }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.exited
		if t.Failed() {
			b, _ := os.ReadFile(p.log)
			t.Logf("%s log:\n%s", p.name, tailLines(string(b), 30))
		}
	})
}

func tailLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// stop sends SIGTERM and waits for the process to exit.
func (p *proc) stop(t *testing.T) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(processWait):
		t.Fatalf("%s did not stop on SIGTERM", p.name)
	}
}

// waitPeers polls the admin socket until ok accepts the server's view.
func waitPeers(t *testing.T, p *proc, what string, ok func(*ops.PeersResponse) bool) *ops.PeersResponse {
	t.Helper()
	deadline := time.Now().Add(processWait)
	var last any
	for time.Now().Before(deadline) {
		select {
		case <-p.exited:
			t.Fatalf("%s exited while waiting for %s", p.name, what)
		default:
		}
		if c, err := ops.Dial(p.dir); err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			resp, err := c.Peers(ctx)
			cancel()
			c.Close()
			if err == nil && ok(resp) {
				return resp
			}
			last = resp
			if err != nil {
				last = err
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("%s: timed out waiting for %s; last answer %+v", p.name, what, last)
	return nil
}

func leads(n int) func(*ops.PeersResponse) bool {
	return func(r *ops.PeersResponse) bool {
		voters := 0
		for _, p := range r.Peers {
			if p.Voter {
				voters++
			}
		}
		return r.LeaderID == r.Self && voters == n
	}
}

func keelson(t *testing.T, bin string, args ...string) (string, error) {
	t.Helper()
	out, err := exec.Command(bin, args...).CombinedOutput()
	t.Logf("keelson %s:\n%s", strings.Join(args, " "), out)
	return string(out), err
}

func etcdClient(t *testing.T, p *proc) *clientv3.Client {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{net.JoinHostPort(p.ip, strconv.Itoa(p.etcd))},
		DialTimeout: 10 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// checkKeys reads every key back from p and compares value and revision.
func checkKeys(t *testing.T, p *proc, want map[string]int64) {
	t.Helper()
	c := etcdClient(t, p)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), processWait)
	defer cancel()
	for k, rev := range want {
		resp, err := c.Get(ctx, k)
		if err != nil {
			t.Fatalf("get %s from %s: %v", k, p.name, err)
		}
		if len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v:"+k || resp.Kvs[0].ModRevision != rev {
			t.Errorf("%s on %s: %v; want value v:%s at revision %d", k, p.name, resp.Kvs, k, rev)
		}
	}
}

// A two-server cluster: save a snapshot from the follower, lose one server
// for good, cluster-reset the survivor (it starts alone with its data), then
// restore the snapshot into a fresh data dir (a new cluster with the same
// keys at the same revisions).
func TestOperatorCommandsWithProcesses(t *testing.T) {
	bin := opsBinary(t)
	shared := [3]int{freePortOn(t, "127.0.0.1"), freePortOn(t, "127.0.0.1"), freePortOn(t, "127.0.0.1")}
	a := &proc{name: "ops-a", ip: "127.0.0.1", dir: t.TempDir(), raftPort: freePortOn(t, "127.0.0.1"), etcd: freePortOn(t, "127.0.0.1")}
	b := &proc{name: "ops-b", ip: "127.0.0.2", dir: t.TempDir(), raftPort: freePortOn(t, "127.0.0.2"), etcd: freePortOn(t, "127.0.0.2")}

	startProc(t, bin, a, shared)
	waitPeers(t, a, "a to lead alone", leads(1))
	token, err := os.ReadFile(filepath.Join(a.dir, "join-token"))
	if err != nil {
		t.Fatal(err)
	}
	startProc(t, bin, b, shared, "--join", a.ip, "--token", strings.TrimSpace(string(token)))
	waitPeers(t, a, "b to join as a voter", leads(2))

	want := map[string]int64{}
	c := etcdClient(t, a)
	defer c.Close()
	for _, k := range []string{"/registry/one", "/registry/two", "/registry/three"} {
		resp, err := c.Put(context.Background(), k, "v:"+k)
		if err != nil {
			t.Fatal(err)
		}
		want[k] = resp.Header.Revision
	}
	c.Close()

	out, err := keelson(t, bin, "raft", "peers", "--data-dir", a.dir, "-o", "json")
	var peers ops.PeersResponse
	if err != nil || json.Unmarshal([]byte(out), &peers) != nil || peers.LeaderID != a.name || len(peers.Peers) != 2 {
		t.Fatalf("raft peers on the leader: %v\n%s", err, out)
	}
	if out, err := keelson(t, bin, "raft", "peers", "--data-dir", b.dir); err != nil || !strings.Contains(out, "this server is a follower") {
		t.Errorf("raft peers on the follower: %v\n%s", err, out)
	}
	if out, err := keelson(t, bin, "raft", "remove-peer", a.name, "--data-dir", a.dir); err == nil || !strings.Contains(out, "stop it first") {
		t.Errorf("remove-peer of the leader it runs on: %v\n%s", err, out)
	}
	snap := filepath.Join(t.TempDir(), "backup.snap")
	if out, err := keelson(t, bin, "snapshot", "save", snap, "--data-dir", b.dir); err != nil || !strings.Contains(out, "saved "+snap) {
		t.Fatalf("snapshot save from the follower: %v\n%s", err, out)
	}
	if out, err := keelson(t, bin, "cluster-reset", "--data-dir", a.dir, "--node-name", a.name); err == nil || !strings.Contains(out, "stop it first") {
		t.Errorf("cluster-reset of a running server: %v\n%s", err, out)
	}

	// b is lost for good; a alone has no quorum until it is reset.
	b.stop(t)
	a.stop(t)
	out, err = keelson(t, bin, "cluster-reset", "--data-dir", a.dir, "--node-name", a.name)
	if err != nil || !strings.Contains(out, "now "+a.name+" alone") {
		t.Fatalf("cluster-reset: %v\n%s", err, out)
	}
	startProc(t, bin, a, shared)
	waitPeers(t, a, "a to lead alone after the reset", leads(1))
	checkKeys(t, a, want)
	a.stop(t)

	fresh := &proc{name: "ops-c", ip: "127.0.0.1", dir: t.TempDir(), raftPort: freePortOn(t, "127.0.0.1"), etcd: freePortOn(t, "127.0.0.1")}
	if out, err := keelson(t, bin, "snapshot", "restore", snap, "--data-dir", a.dir, "--node-name", fresh.name, "--raft-advertise", fresh.raftAddr()); err == nil || !strings.Contains(out, "already holds raft state") {
		t.Errorf("restore over existing state: %v\n%s", err, out)
	}
	if out, err := keelson(t, bin, "snapshot", "restore", snap, "--data-dir", fresh.dir, "--node-name", fresh.name, "--raft-advertise", fresh.raftAddr()); err != nil {
		t.Fatalf("snapshot restore: %v\n%s", err, out)
	}
	startProc(t, bin, fresh, shared)
	waitPeers(t, fresh, "the restored server to lead alone", leads(1))
	checkKeys(t, fresh, want)
	fresh.stop(t)
}
