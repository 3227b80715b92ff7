package main

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestMeasure(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	tests := []struct {
		name         string
		attempts     []attempt
		wantOK       bool
		wantFailover float64
		wantFirstAck float64
		wantFailed   int
	}{
		{"no success after the kill", []attempt{
			{Sent: at(-20), Acked: at(-10), OK: true},
			{Sent: at(10), Acked: at(1010), OK: false},
		}, false, 0, 0, 1},
		{"in-flight write acked by the old leader counts only as first ack", []attempt{
			{Sent: at(-5), Acked: at(2), OK: true},
			{Sent: at(5), Acked: at(1005), OK: false},
			{Sent: at(1900), Acked: at(2100), OK: true},
			{Sent: at(1800), Acked: at(2150), OK: true},
		}, true, 2.1, 0.002, 1},
		{"earliest acknowledgement wins, not earliest issue", []attempt{
			{Sent: at(100), Acked: at(2500), OK: true},
			{Sent: at(2000), Acked: at(2050), OK: true},
		}, true, 2.05, 2.05, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, ok := measure(tt.attempts, t0)
			if ok != tt.wantOK || o.Failed != tt.wantFailed {
				t.Fatalf("measure = %+v, %v; want ok %v, %d failed", o, ok, tt.wantOK, tt.wantFailed)
			}
			if ok && (o.FailoverSec != tt.wantFailover || o.FirstAckSec != tt.wantFirstAck) {
				t.Errorf("failover %v, first ack %v; want %v, %v", o.FailoverSec, o.FirstAckSec, tt.wantFailover, tt.wantFirstAck)
			}
		})
	}
}

func TestWriterRecordsAndStops(t *testing.T) {
	var calls atomic.Int64
	spec := writerSpec{Interval: time.Millisecond, Timeout: 50 * time.Millisecond, MaxInFlight: 4}
	// Odd writes fail, even ones hang until their timeout on every third.
	w, stop := startWriter(context.Background(), spec, func(ctx context.Context, seq int) error {
		calls.Add(1)
		switch {
		case seq%3 == 2:
			<-ctx.Done()
			return ctx.Err()
		case seq%2 == 1:
			return errors.New("no leader")
		}
		return nil
	})
	if err := w.waitSuccessAfter(context.Background(), time.Now().Add(100*time.Millisecond), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	attempts := stop()
	n := calls.Load()
	time.Sleep(20 * time.Millisecond)
	if calls.Load() != n {
		t.Errorf("writer kept writing after stop: %d calls, then %d", n, calls.Load())
	}
	var ok, failed int
	for _, a := range attempts {
		if a.Acked.Before(a.Sent) {
			t.Errorf("attempt acknowledged before it was sent: %+v", a)
		}
		if a.OK {
			ok++
		} else {
			failed++
		}
	}
	if ok == 0 || failed == 0 {
		t.Errorf("recorded %d successes and %d failures, want both", ok, failed)
	}
}

func TestWaitSuccessAfterTimesOut(t *testing.T) {
	spec := writerSpec{Interval: time.Millisecond, Timeout: 10 * time.Millisecond, MaxInFlight: 2}
	w, stop := startWriter(context.Background(), spec, func(context.Context, int) error { return errors.New("no leader") })
	defer stop()
	if err := w.waitSuccessAfter(context.Background(), time.Now(), 50*time.Millisecond); err == nil {
		t.Error("waitSuccessAfter succeeded with every write failing")
	}
}

func TestParseFlags(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		wantRows []string
		wantErr  bool
	}{
		{"defaults", nil, []string{"api", "etcd"}, false},
		{"no failover rows", []string{"-failover", ""}, nil, false},
		{"one row", []string{"-failover", "etcd"}, []string{"etcd"}, false},
		{"unknown row", []string{"-failover", "grpc"}, nil, true},
		{"repeated row", []string{"-failover", "api,api"}, nil, true},
		{"two addresses", []string{"-addrs", "127.0.0.1,127.0.0.2"}, nil, true},
		{"non-loopback address", []string{"-addrs", "127.0.0.1,10.0.0.2,127.0.0.3"}, nil, true},
		{"repeated address", []string{"-addrs", "127.0.0.1,127.0.0.1,127.0.0.3"}, nil, true},
		{"no reps", []string{"-reps", "0"}, nil, true},
		{"stray argument", []string{"now"}, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := parseFlags(tt.args, &strings.Builder{})
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseFlags(%q) error = %v, want error %v", tt.args, err, tt.wantErr)
			}
			if !tt.wantErr && strings.Join(o.rows, ",") != strings.Join(tt.wantRows, ",") {
				t.Errorf("rows = %v, want %v", o.rows, tt.wantRows)
			}
		})
	}
	if o, _ := parseFlags(nil, &strings.Builder{}); o.writer.MaxInFlight != 101 {
		t.Errorf("default MaxInFlight = %d, want 101 (1s timeout / 10ms interval + 1)", o.writer.MaxInFlight)
	}
}
