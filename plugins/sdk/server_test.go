package sdk

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/keelson/keelson/plugins/proto"
)

var validConfig = proto.Configuration{
	APIEndpoint: "https://127.0.0.1:6443",
	CAPEM:       []byte("ca"),
	Credentials: proto.Credentials{BearerToken: "tok"},
	Term:        9,
	Config:      []byte(`{"k":"v"}`),
}

// serveTest serves p over loopback gRPC and returns the host's client and
// a channel that receives the reason whenever the SDK decides its host is
// gone.
func serveTest(t *testing.T, p Plugin) (*proto.Client, chan string) {
	t.Helper()
	srv := newServer(p, slog.New(slog.DiscardHandler))
	lost := make(chan string, 1)
	srv.hostLost = func(reason string) { lost <- reason }
	return serveOverGRPC(t, srv), lost
}

// serveOverGRPC serves impl on loopback gRPC, as go-plugin would, and
// returns the host's client for it.
func serveOverGRPC(t *testing.T, impl proto.Server) *proto.Client {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	if err := (&proto.GRPCPlugin{Impl: impl}).GRPCServer(nil, gs); err != nil {
		t.Fatal(err)
	}
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	raw, _ := (&proto.GRPCPlugin{}).GRPCClient(context.Background(), nil, cc)
	return raw.(*proto.Client)
}

// configureAndRun configures the plugin behind c with validConfig and
// starts its run.
func configureAndRun(t *testing.T, c *proto.Client) *proto.StatusStream {
	t.Helper()
	if err := c.Configure(context.Background(), validConfig); err != nil {
		t.Fatal(err)
	}
	stream, err := c.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return stream
}

func blockUntilStopped(ctx context.Context, env Env) error {
	<-ctx.Done()
	return nil
}

func TestRunReportsReadyAndStopsCleanly(t *testing.T) {
	var mu sync.Mutex
	var got Env
	c, _ := serveTest(t, Plugin{Name: "p", Kind: KindController, Version: "v1", Run: func(ctx context.Context, env Env) error {
		mu.Lock()
		got = env
		mu.Unlock()
		return blockUntilStopped(ctx, env)
	}})
	ctx := context.Background()
	stream := configureAndRun(t, c)
	st, err := stream.Recv()
	if err != nil || !st.Ready {
		t.Fatalf("first status = %+v, %v; want ready", st, err)
	}
	mu.Lock()
	env := got
	mu.Unlock()
	if env.Term != 9 || string(env.Config) != `{"k":"v"}` || env.RESTConfig.Host != validConfig.APIEndpoint ||
		env.RESTConfig.BearerToken != "tok" || string(env.RESTConfig.CAData) != "ca" {
		t.Errorf("Env = term %d config %s rest %+v", env.Term, env.Config, env.RESTConfig)
	}
	if err := c.Configure(ctx, validConfig); err == nil {
		t.Error("Configure while running was accepted")
	}
	if err := c.Stop(ctx, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	st, err = stream.Recv()
	if err != nil || st.Ready || st.Message != "stopped" {
		t.Errorf("status after Stop = %+v, %v; want not ready, stopped", st, err)
	}
	if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
		t.Errorf("stream after Stop ended with %v, want EOF", err)
	}
}

// A plugin that reports its own ready message at once must not see it
// overtaken by the SDK's default "running" (the host would show the default
// for the whole run). The server is held right after it starts the plugin,
// as a descheduled thread on a loaded machine holds it, so anything the
// server reported after that point would come last.
func TestOwnReadyMessageIsNotOvertakenByTheDefault(t *testing.T) {
	srv := newServer(Plugin{Name: "p", Kind: KindController, Version: "v1", Run: func(ctx context.Context, env Env) error {
		env.Ready("mine")
		return blockUntilStopped(ctx, env)
	}}, slog.New(slog.DiscardHandler))
	srv.pluginStarted = func() { time.Sleep(100 * time.Millisecond) }
	c := serveOverGRPC(t, srv)
	stream := configureAndRun(t, c)
	var msgs []string
	for range 2 {
		st, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, st.Message)
	}
	if msgs[0] != "running" || msgs[1] != "mine" {
		t.Fatalf("statuses %q, want the default first and the plugin's own last", msgs)
	}
	if err := c.Stop(context.Background(), 10*time.Second); err != nil {
		t.Fatal(err)
	}
}

func TestRunBeforeConfigureFails(t *testing.T) {
	c, _ := serveTest(t, Plugin{Name: "p", Kind: KindController, Run: blockUntilStopped})
	stream, err := c.Run(context.Background())
	if err == nil {
		_, err = stream.Recv()
	}
	if err == nil || !strings.Contains(err.Error(), "Run before Configure") {
		t.Errorf("Run before Configure: %v", err)
	}
}

func TestFailingRunIsReportedToTheHost(t *testing.T) {
	c, lost := serveTest(t, Plugin{Name: "p", Kind: KindController, Run: func(ctx context.Context, env Env) error {
		return errors.New("cannot list nodes")
	}})
	stream := configureAndRun(t, c)
	var last proto.Status
	for {
		st, err := stream.Recv()
		if err != nil {
			if !strings.Contains(err.Error(), "cannot list nodes") {
				t.Errorf("stream ended with %v, want the plugin's error", err)
			}
			break
		}
		last = st
	}
	if last.Error != "cannot list nodes" {
		t.Errorf("last status %+v does not carry the error", last)
	}
	select {
	case r := <-lost:
		t.Errorf("a failed Run is not a lost host, got %q", r)
	default:
	}
}

func TestClosedStreamWithoutStopMeansHostLost(t *testing.T) {
	stopped := make(chan struct{})
	c, lost := serveTest(t, Plugin{Name: "p", Kind: KindController, Run: func(ctx context.Context, env Env) error {
		<-ctx.Done()
		close(stopped)
		return nil
	}})
	if err := c.Configure(context.Background(), validConfig); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := c.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	cancel()
	if r := <-lost; !strings.Contains(r, "without Stop") {
		t.Errorf("host lost reason %q", r)
	}
	<-stopped // the plugin's work was cancelled too
}

func TestWatchdogExitsWhenParentChanges(t *testing.T) {
	var mu sync.Mutex
	ppid := 100
	exited := make(chan struct{})
	w := &watchdog{
		ppid:     100,
		getppid:  func() int { mu.Lock(); defer mu.Unlock(); return ppid },
		interval: time.Millisecond,
		logger:   slog.New(slog.DiscardHandler),
		exit:     func() { close(exited) },
	}
	done := make(chan struct{})
	go func() { w.run(context.Background()); close(done) }()
	mu.Lock()
	ppid = 1 // re-parented to init: the host died
	mu.Unlock()
	<-exited
	<-done
	w.hostLost("again") // exits once only: a second close would panic
}

func TestWatchdogStopsWithContext(t *testing.T) {
	w := &watchdog{ppid: 1, getppid: func() int { return 1 }, interval: time.Millisecond,
		logger: slog.New(slog.DiscardHandler), exit: func() { t.Error("exit called") }}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.run(ctx); close(done) }()
	cancel()
	<-done
}

func TestPluginValidate(t *testing.T) {
	run := blockUntilStopped
	tests := []struct {
		name string
		p    Plugin
		ok   bool
	}{
		{"ok", Plugin{Name: "a", Kind: KindIngress, Run: run}, true},
		{"no name", Plugin{Kind: KindIngress, Run: run}, false},
		{"bad kind", Plugin{Name: "a", Kind: "operator", Run: run}, false},
		{"no run", Plugin{Name: "a", Kind: KindIngress}, false},
	}
	for _, tt := range tests {
		if err := tt.p.validate(); (err == nil) != tt.ok {
			t.Errorf("%s: validate() = %v", tt.name, err)
		}
	}
}
