package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"
)

// sample is what one run of one load against one target measured.
type sample struct {
	lat     []time.Duration
	elapsed time.Duration
}

// drive sends GETs for benchHost to url over l.conns keep-alive
// connections for d, after a warm-up of one request per connection. An
// unpaced connection sends its next request when the last one is answered;
// a paced one sends on a fixed schedule (l.rate/l.conns per second, the
// connections' schedules staggered) and a request's latency counts from
// its scheduled time, so a late answer also delays, and is charged to,
// the ones queued behind it.
func drive(ctx context.Context, url string, l load, d time.Duration) (sample, error) {
	tr := &http.Transport{MaxIdleConnsPerHost: l.conns, MaxConnsPerHost: l.conns, DisableCompression: true}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}
	get := func() error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/x", nil)
		if err != nil {
			return err
		}
		req.Host = benchHost
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("GET %s (Host %s): %s", url, benchHost, resp.Status)
		}
		return err
	}
	if err := warm(l.conns, get); err != nil {
		return sample{}, err
	}
	lat := make([][]time.Duration, l.conns)
	errs := make([]error, l.conns)
	var wg sync.WaitGroup
	start := time.Now()
	end := start.Add(d)
	for w := range l.conns {
		wg.Go(func() { lat[w], errs[w] = worker(get, l, w, start, end) })
	}
	wg.Wait()
	s := sample{elapsed: time.Since(start)}
	for w := range l.conns {
		if errs[w] != nil {
			return s, errs[w]
		}
		s.lat = append(s.lat, lat[w]...)
	}
	return s, nil
}

// warm opens every connection with one request each, all at once.
func warm(conns int, get func() error) error {
	errs := make(chan error, conns)
	for range conns {
		go func() { errs <- get() }()
	}
	var first error
	for range conns {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// worker is connection w's loop until end.
func worker(get func() error, l load, w int, start, end time.Time) ([]time.Duration, error) {
	var lat []time.Duration
	var interval time.Duration
	next := start
	if l.rate > 0 {
		interval = time.Duration(float64(time.Second) * float64(l.conns) / float64(l.rate))
		next = start.Add(interval * time.Duration(w) / time.Duration(l.conns))
	}
	for {
		now := time.Now()
		if l.rate == 0 {
			next = now
		} else if wait := next.Sub(now); wait > 0 {
			time.Sleep(wait)
		}
		if !next.Before(end) || (l.rate == 0 && !now.Before(end)) {
			return lat, nil
		}
		if err := get(); err != nil {
			return lat, err
		}
		lat = append(lat, time.Since(next))
		next = next.Add(interval)
	}
}
