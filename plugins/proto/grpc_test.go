package proto

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// fakeServer records what the host sent and replays statuses on Run.
type fakeServer struct {
	configured Configuration
	grace      time.Duration
	statuses   []Status
}

func (f *fakeServer) Describe(context.Context) (Description, error) {
	return Description{Name: "fake", Kind: KindScheduler, Version: "1.2.3", ProtocolVersions: []int{1}}, nil
}

func (f *fakeServer) Configure(_ context.Context, c Configuration) error {
	if err := c.Validate(); err != nil {
		return err
	}
	f.configured = c
	return nil
}

func (f *fakeServer) Run(_ context.Context, send func(Status) error) error {
	for _, st := range f.statuses {
		if err := send(st); err != nil {
			return err
		}
	}
	return nil
}

func (f *fakeServer) Stop(_ context.Context, grace time.Duration) error {
	f.grace = grace
	return nil
}

func dial(t *testing.T, impl Server) *Client {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	if err := (&GRPCPlugin{Impl: impl}).GRPCServer(nil, srv); err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	raw, err := (&GRPCPlugin{}).GRPCClient(context.Background(), nil, cc)
	if err != nil {
		t.Fatal(err)
	}
	return raw.(*Client)
}

func TestProtocolRoundTrip(t *testing.T) {
	f := &fakeServer{statuses: []Status{{Message: "syncing"}, {Ready: true, Message: "ok"}, {Ready: false, Error: "lost watch"}}}
	c := dial(t, f)
	ctx := context.Background()

	d, err := c.Describe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d.Name != "fake" || d.Kind != KindScheduler || d.Version != "1.2.3" || len(d.ProtocolVersions) != 1 || d.ProtocolVersions[0] != 1 {
		t.Errorf("Describe = %+v", d)
	}

	want := Configuration{
		APIEndpoint: "https://127.0.0.1:6443",
		CAPEM:       []byte("-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n"),
		Credentials: Credentials{ClientCertPEM: []byte("cert"), ClientKeyPEM: []byte("key")},
		Term:        1<<60 + 1, // beyond a double's exact integers
		Config:      json.RawMessage(`{"workers":5,"zones":["a","b"]}`),
	}
	if err := c.Configure(ctx, want); err != nil {
		t.Fatal(err)
	}
	got := f.configured
	if got.APIEndpoint != want.APIEndpoint || string(got.CAPEM) != string(want.CAPEM) || got.Term != want.Term ||
		string(got.Credentials.ClientCertPEM) != "cert" || string(got.Credentials.ClientKeyPEM) != "key" {
		t.Errorf("Configure delivered %+v", got)
	}
	var cfg, wantCfg any
	_ = json.Unmarshal(got.Config, &cfg)
	_ = json.Unmarshal(want.Config, &wantCfg)
	if b1, b2 := mustJSON(cfg), mustJSON(wantCfg); b1 != b2 {
		t.Errorf("config section = %s, want %s", b1, b2)
	}
	if err := c.Configure(ctx, Configuration{APIEndpoint: "x"}); err == nil {
		t.Error("Configure without credentials was accepted")
	}

	stream, err := c.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i, w := range f.statuses {
		st, err := stream.Recv()
		if err != nil {
			t.Fatalf("status %d: %v", i, err)
		}
		if st != w {
			t.Errorf("status %d = %+v, want %+v", i, st, w)
		}
	}
	if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
		t.Errorf("after the last status Recv = %v, want EOF", err)
	}

	if err := c.Stop(ctx, 3*time.Second); err != nil {
		t.Fatal(err)
	}
	if f.grace != 3*time.Second {
		t.Errorf("Stop grace = %s, want 3s", f.grace)
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func TestCredentialsValidate(t *testing.T) {
	tests := []struct {
		name string
		c    Credentials
		ok   bool
	}{
		{"token", Credentials{BearerToken: "t"}, true},
		{"cert", Credentials{ClientCertPEM: []byte("c"), ClientKeyPEM: []byte("k")}, true},
		{"none", Credentials{}, false},
		{"both", Credentials{BearerToken: "t", ClientCertPEM: []byte("c"), ClientKeyPEM: []byte("k")}, false},
		{"cert without key", Credentials{ClientCertPEM: []byte("c")}, false},
	}
	for _, tt := range tests {
		if err := tt.c.Validate(); (err == nil) != tt.ok {
			t.Errorf("%s: Validate() = %v", tt.name, err)
		}
	}
}

type metricsServer struct{ fakeServer }

func (m *metricsServer) Metrics(context.Context) ([]byte, error) {
	return []byte("# TYPE up gauge\nup 1\n"), nil
}

// A plugin that exposes metrics hands them over as text; one that does
// not (an older SDK) answers Unimplemented, which the host takes as none.
func TestMetrics(t *testing.T) {
	ctx := context.Background()
	got, err := dial(t, &metricsServer{}).Metrics(ctx)
	if err != nil || string(got) != "# TYPE up gauge\nup 1\n" {
		t.Fatalf("Metrics = %q, %v", got, err)
	}
	_, err = dial(t, &fakeServer{}).Metrics(ctx)
	if status.Code(err) != codes.Unimplemented {
		t.Fatalf("Metrics of a plugin without them: %v, want Unimplemented", err)
	}
}
