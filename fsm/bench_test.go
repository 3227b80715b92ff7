package fsm

import (
	"encoding/binary"
	"io"
	"runtime"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

func benchKey(i int) []byte { return binary.BigEndian.AppendUint64(nil, uint64(i)) }

// filled returns a store with n 8-byte keys holding 256-byte values.
func filled(b *testing.B, n int) *Store {
	b.Helper()
	s := New()
	val := make([]byte, 256)
	for i := range n {
		cmd := mustEncode(b, CmdTxn, &pb.TxnRequest{Success: []*pb.RequestOp{
			putReqOp(&pb.PutRequest{Key: benchKey(i), Value: val}),
		}})
		if res := s.Apply(uint64(i+1), cmd); res.Err != nil {
			b.Fatal(res.Err)
		}
	}
	return s
}

func BenchmarkApplyPut(b *testing.B) {
	s := New()
	val := make([]byte, 256)
	cmds := make([][]byte, 1024)
	for i := range cmds {
		cmds[i] = mustEncode(b, CmdTxn, &pb.TxnRequest{Success: []*pb.RequestOp{putReqOp(&pb.PutRequest{Key: benchKey(i * 7919), Value: val})}})
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if res := s.Apply(uint64(i+1), cmds[i%len(cmds)]); res.Err != nil {
			b.Fatal(res.Err)
		}
	}
}

func BenchmarkRange(b *testing.B) {
	s := filled(b, 100_000)
	v := s.View()
	cases := []struct {
		name string
		req  *pb.RangeRequest
	}{
		{"one key", &pb.RangeRequest{Key: benchKey(50_000)}},
		{"100 keys", &pb.RangeRequest{Key: benchKey(50_000), RangeEnd: benchKey(50_100)}},
		{"limit 100 of 100k", &pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}, Limit: 100}},
		{"one key at past rev", &pb.RangeRequest{Key: benchKey(50_000), Revision: 60_000}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if _, err := v.Range(c.req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkSnapshot writes a 100k-key snapshot and reports heap bytes per
// key of the store that holds them (live value, version and event).
func BenchmarkSnapshot(b *testing.B) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	s := filled(b, 100_000)
	runtime.GC()
	runtime.ReadMemStats(&after)
	v := s.View()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := v.WriteSnapshot(io.Discard); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	// Reported after the loop: ResetTimer drops metrics reported before it.
	b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/100_000, "heapB/key")
	runtime.KeepAlive(s)
}
